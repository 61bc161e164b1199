# Device-side: run `llmbo bench` jobs in parallel until a deadline, then merge.
# usage: bench.sh DEADLINE_SECONDS JOBFILE  (one line of bench arguments per job)
deadline=$1; jobs=$2; i=0
while read -r line; do
  [ -z "$line" ] && continue
  mkdir -p /tmp/r$i; [ -f .gpu/prev/reactions.csv ] && cp .gpu/prev/reactions.csv /tmp/r$i/
  timeout $deadline python3 .gpu/launch.py bench $line --device ${DEVICE:-cuda} --threads 1 --no-report --no-progress --results-dir /tmp/r$i > /tmp/log$i 2>&1 &
  i=$((i+1))
done < "$jobs"
wait
for f in /tmp/log*; do echo "== $f"; grep -v "Loading weights" $f | tail -5; done > $OUT/bench.log
python3 .gpu/merge.py $OUT | tee -a $OUT/bench.log
