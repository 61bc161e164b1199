set -u
source "$(dirname "$0")/common.sh" "$1"
python3 .gpu/launch.py speed --device cuda --template names --surrogates static,projection,lora,lora-layer --n-train 10,30,60 --repeats 3 --reference-n-train 60 --output $OUT/speed.csv 2>&1 | grep -v "Loading weights" | tee $OUT/speed.log
python3 .gpu/launch.py speed --device cuda --surrogates "" --pool-sizes 1000,10000,100000 --scaling-surrogates projection,lora --scaling-n-train 30 --repeats 3 --output $OUT/speed.csv 2>&1 | grep -v "Loading weights" | tee -a $OUT/speed.log
left=$((560 - SECONDS)); echo "bench time left $left s"
[ $left -gt 90 ] && bash .gpu/bench.sh $left .gpu/jobs1.txt
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,memory.used --format=csv >> $OUT/env.txt
