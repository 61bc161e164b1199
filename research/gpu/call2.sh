set -u
source "$(dirname "$0")/common.sh" "$1" > /dev/null 2>&1
clean() { tr '\r' '\n' | grep -v -e "Loading weights" -e "it/s\]" -e "it\]" -e "^ *$"; }
python3 -m pytest -q -p no:cacheprovider tests/surrogates/test_deep_kernel.py 2>&1 | tail -4 | tee $OUT/tests.txt
python3 .gpu/launch.py speed --device cuda --template names --surrogates static,projection,lora,lora-layer --gp-devices auto,encoder --n-train 10,30,60 --repeats 3 --reference-n-train 60 --output $OUT/speed.csv 2>&1 | clean | tee $OUT/speed.log
python3 .gpu/launch.py speed --device cuda --surrogates "" --pool-sizes 1000,10000,100000 --scaling-surrogates projection,lora --scaling-n-train 30 --repeats 3 --output $OUT/speed.csv 2>&1 | clean | tee -a $OUT/speed.log
left=$((570 - SECONDS)); echo "left $left s"
cp benchmarks/results/cache_equivalence.csv $OUT/cache_equivalence.csv
[ $left -gt 60 ] && timeout $left python3 .gpu/launch.py research/cache_equivalence.py --method lora-out-seg --seeds 0,1 --iterations 15 --device cuda --output $OUT/cache_equivalence.csv 2>&1 | clean | tail -3
nvidia-smi --query-gpu=clocks.sm,temperature.gpu --format=csv | tee -a $OUT/env.txt
