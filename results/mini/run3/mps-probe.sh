t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/mamba_ssm-*.whl .gpu/decord-*.whl 2>&1 | tail -2
mkdir -p /tmp/mb && cp -a runs/mini /tmp/mb/mini
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 COLUMNS=160
D=/tmp/mb/mini/data/synthetic/prepared
echo "setup $(( $(date +%s) - t0 )) s"
phase() {  # $1 = name, $2 = seconds
  for m in "matten s 3 madan 0" "matten s 3 madan 1" "matten s 1 madan 0" "matten s 2 madan 0" "matten s 4 madan 0" "matten s 3 tokens 0" "matten b 3 madan 0" "latte s 3 madan 0"; do
    set -- $m; d=/tmp/p-$PH/$1-$2-$3-$4-$5
    python3 -m harness.cli train --data $D --run-dir $d --family $1 --size $2 --variant $3 --conditioning $4 --seed $5 --patch 8 --frames 16 \
      --frame-interval 1 --image-size 32 --batch 64 --steps 5000 --ckpt-every 5000 --lr 1e-3 --num-workers 2 --device cuda --no-compile \
      --precision bf16 --no-preflight --log-every 10 > /tmp/p-$PH.$1-$2-$3-$4-$5.log 2>&1 &
  done
  sleep $SECS; pkill -f "harness.cli train"; sleep 3; pkill -9 -f "harness.cli train"; sleep 1
  for f in /tmp/p-$PH/*/metrics.jsonl; do python3 -c "
import json,sys; rows=[json.loads(l) for l in open('$f')]; r=rows[len(rows)//3:]
print('$PH', '$f'.split('/')[3], 'last step', rows[-1]['step'], 'median samples/s over steps %d-%d:' % (r[0]['step'], r[-1]['step']), sorted(x['samples_per_s'] for x in r)[len(r)//2])"; done
}
PH=plain SECS=65 phase
echo "plain done $(( $(date +%s) - t0 )) s"
nvidia-cuda-mps-control -d && echo "mps daemon started"
PH=mps SECS=65 phase
echo quit | nvidia-cuda-mps-control; echo "mps done $(( $(date +%s) - t0 )) s"
tail -3 /tmp/p-mps.matten-s-2-madan-0.log
