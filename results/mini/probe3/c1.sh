set -o pipefail
t0=$(date +%s)
bash .gpu/mA.sh
export PYTHONPATH=/tmp/site:/tmp/mbcode PYTHONUNBUFFERED=1 COLUMNS=160 MATTEN_BENCH_CACHE=/tmp/mbcache
cd /tmp/mbcode
python3 -c "import triton; print('triton', triton.__version__)"
echo "== 19: triton scan at XL shape ($(date -u +%T))"
timeout 200 python3 devtmp/p19b.py 2>&1 | grep -v Warning | tail -30
echo "== 13: Latte-S/8 loop probes ($(date -u +%T))"
for m in base nopin same same-nobar; do
  echo "-- $m"
  timeout 100 python3 devtmp/p13b.py $m bench train --device cuda --size s --patch 8 --batch 64 --frames 16 --channels 3 --latent 32 --num-classes 10 --no-reference --no-sampling --no-compile --models latte --loop-steps 100 --loop-workers 4 --record-dir /tmp/rec13/$m 2>&1 | grep -v "━" | tail -8
done
mkdir -p $OUT/rec13 && cp -r /tmp/rec13/* $OUT/rec13/ 2>/dev/null
echo "== 14: probes start ($(date -u +%T))"
mkdir -p /tmp/mbcache /tmp/p14
for e in matten-s-v3-madan-synthetic matten-s-v3-madan-synthetic-seed1 latte-s-synthetic; do
  setsid nohup python3 devtmp/p14.py $e /tmp/mb/mini > /tmp/p14/$e.log 2>&1 < /dev/null &
done
sleep 8; tail -n 2 /tmp/p14/*.log | cut -c1-200; echo "call1 $(( $(date +%s) - t0 )) s"
