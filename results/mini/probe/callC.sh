for i in $(seq 1 30); do if grep -q "^exit " /tmp/mb/run.log; then break; fi; sleep 10; done
grep -v "━" /tmp/mb/run.log | grep -v "rank-deficient" | tail -25
cat /tmp/mb/started; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv
cd /tmp/mb && tar czf $OUT/mini-results.tgz results-mini run.log started 2>/dev/null; \
  find mini -name "*.json" -o -name "*.jsonl" -o -name "*.png" | grep -v "/clips/" | tar czf $OUT/mini-records.tgz -T - ; ls -la $OUT
