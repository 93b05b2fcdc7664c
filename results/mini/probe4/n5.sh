# tenth session, call A on nvidia-h200 (carry .gpu devtmp runs/mini): setup; probe 4's three arms (devtmp/p14d.py)
# side by side, waited for (at most LIM s in all); every sample set's clips to $OUT (one .npy of 256 clips each,
# 12.6 MB) so that the FVDs can be computed here if the machine is gone before call B (devtmp/n5b.sh).
set -o pipefail
t0=$(date +%s)
bash .gpu/mA.sh
export PYTHONPATH=/tmp/site:/tmp/mbcode PYTHONUNBUFFERED=1 COLUMNS=160 MATTEN_BENCH_CACHE=/tmp/mbcache
cd /tmp/mbcode; mkdir -p /tmp/p14d
pids=""
for a in base cool750 cool500; do
  python3 devtmp/p14d.py $a /tmp/mb/mini > /tmp/p14d/$a.log 2>&1 < /dev/null &
  pids="$pids $!"
done
(nvidia-smi dmon -s um -d 10 > /tmp/p14d/dmon.txt 2>&1 &)
lim=${LIM:-470}
while [ $(( $(date +%s) - t0 )) -lt $lim ]; do
  alive=0; for p in $pids; do kill -0 $p 2>/dev/null && alive=$((alive+1)); done
  [ $alive -eq 0 ] && break
  sleep 5
done
echo "arms done or out of time after $(( $(date +%s) - t0 )) s"; grep -h '^{' /tmp/p14d/*.log
for a in base cool750 cool500; do grep -v '━' /tmp/p14d/$a.log | grep -iE "error|Traceback" | head -3; done
mkdir -p /tmp/p14out && cd /tmp/mb/mini/probe4 && for d in */s*; do
  [ -f $d/clips/clips-00000.npy ] && [ $(ls $d/clips | wc -l) -eq 1 ] && cp $d/clips/clips-00000.npy $OUT/clips-${d//\//-}.npy
  cp $d/contact_sheet.png /tmp/p14out/sheet-${d//\//-}.png 2>/dev/null; done
for a in base cool750 cool500; do cp /tmp/mb/mini/probe4/$a/metrics.jsonl /tmp/p14out/$a.metrics.jsonl 2>/dev/null; grep -v '━' /tmp/p14d/$a.log > /tmp/p14out/$a.log; done
cp /tmp/p14d/dmon.txt /tmp/p14out/
tar czf $OUT/p14d.tgz -C /tmp/p14out . && ls -la $OUT; echo "call A $(( $(date +%s) - t0 )) s"
