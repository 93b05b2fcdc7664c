# The third call (2026-11-30 12:00 UTC): the first command had stopped on a full disk (ten checkpoints of each of
# eight models); keep each model's newest checkpoint, then rerun the same command, which resumes what failed.
df -h /tmp | tail -1; cd /tmp/mb/mini/exp && for d in */checkpoints; do ls $d | sort | head -n -1 | sed "s#^#$d/#" | xargs -r rm -f; done
rm -f */checkpoints/*.tmp* ; du -sh /tmp/mb/mini; df -h /tmp | tail -1
cd /tmp/mbcode && export PYTHONPATH=/tmp/site:/tmp/mbcode PYTHONUNBUFFERED=1 COLUMNS=160 MATTEN_BENCH_CACHE=/tmp/mbcache
mv /tmp/mb/run.log /tmp/mb/run1.log && date -u > /tmp/mb/started2
(setsid nohup bash -c 'python3 -m harness.cli run --table all --scale mini --run-dir /tmp/mb/mini --results-dir /tmp/mb/results-mini > /tmp/mb/run.log 2>&1; echo "exit $?" >> /tmp/mb/run.log; date -u >> /tmp/mb/run.log' > /dev/null 2>&1 &)
sleep 1; bash /tmp/mP.sh 480
