# poll the mini run for at most $1 seconds, then print progress and copy the small outputs to $OUT
lim=${1:-540}
for i in $(seq 1 $(( lim / 10 ))); do sleep 10; if grep -q "^exit " /tmp/mb/run.log 2>/dev/null; then break; fi; done
echo "now $(date -u), started $(cat /tmp/mb/started)"
grep -v "━" /tmp/mb/run.log | tail -25
for f in /tmp/mb/mini/exp/*/metrics.jsonl; do echo "$(basename $(dirname $f)) $(tail -1 $f | cut -c1-110)"; done
for f in /tmp/mb/mini/exp/*/task.log; do echo "== $(basename $(dirname $f)): $(grep -v '━' $f | tail -1 | cut -c1-100)"; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; uptime
cd /tmp/mb && tar czf $OUT/mini-logs.tgz run.log started dmon.txt 2>/dev/null
find mini \( -name "*.json" -o -name "*.jsonl" -o -name "*.png" -o -name "task.log" \) | grep -v "/clips/" | tar czf $OUT/mini-records.tgz -T - 2>/dev/null
[ -d results-mini ] && tar czf $OUT/results-mini.tgz results-mini
ls -la $OUT
