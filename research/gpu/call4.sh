set -u
source "$(dirname "$0")/common.sh" "$1" > /dev/null 2>&1
clean() { tr '\r' '\n' | grep -v -e "Loading weights" -e "it/s\]" -e "it\]" -e "^ *$"; }
python3 -m pytest -q -p no:cacheprovider tests/surrogates/test_deep_kernel.py tests/encoders/test_transformer.py -k "gp_ or dtype or cached" --tb=short 2>&1 | clean | tail -25 | tee $OUT/tests.txt
timeout 60 python3 .gpu/gp_placement_diff.py 2>&1 | clean | tail -6 | tee $OUT/gpdiff.txt
