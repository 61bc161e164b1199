set -u
source "$(dirname "$0")/common.sh" "$1" > /dev/null 2>&1
clean() { tr '\r' '\n' | grep -v -e "Loading weights" -e "it/s\]" -e "it\]" -e "^ *$"; }
python3 -m pytest -q -p no:cacheprovider tests/surrogates/test_deep_kernel.py -k gp_on_the_cpu --tb=line 2>&1 | clean | grep -v "^  " | tail -8
python3 .gpu/gp_placement_diff.py 2>&1 | clean | tail -8
cp .gpu/ce_prev.csv $OUT/cache_equivalence.csv
timeout 240 python3 .gpu/launch.py research/cache_equivalence.py --method lora-out-seg --seeds 2,3,4,5 --iterations 15 --device cuda --output $OUT/cache_equivalence.csv 2>&1 | clean | cut -c1-200 | tail -4
