set -o pipefail
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/mamba_ssm-*.whl .gpu/decord-*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 COLUMNS=200 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p /tmp/mb && cp -a runs/mini /tmp/mb/mini
echo "setup $(( $(date +%s) - t0 )) s"
python3 .gpu/v2probe.py 2>&1 | tee $OUT/v2probe.txt
echo "v2 probe done $(( $(date +%s) - t0 )) s"
D=/tmp/mb/mini/data/synthetic/prepared
common="--data $D --patch 8 --frames 16 --frame-interval 1 --image-size 32 --batch 64 --lr 1e-3 --steps 150 --ckpt-every 150 --num-workers 2 --device cuda --no-compile --precision bf16"
(nvidia-smi dmon -s u -d 2 > $OUT/dmon.txt 2>&1 &) 
for m in "matten s 3 madan 0" "matten s 1 madan 0" "matten s 2 madan 0" "matten s 4 madan 0" "matten s 3 tokens 0" "matten s 3 madan 1" "latte s 3 madan 0" "matten b 3 madan 0"; do
  set -- $m
  OMP_NUM_THREADS=2 python3 -m harness.cli train $common --family $1 --size $2 --variant $3 --conditioning $4 --seed $5 \
    --run-dir /tmp/conc/$1-$2-$3-$4-$5 > $OUT/conc-$1-$2-$3-$4-$5.log 2>&1 &
done
wait
pkill nvidia-smi
echo "concurrent trainings done $(( $(date +%s) - t0 )) s"
python3 - <<'PY'
import json, glob, statistics
for f in sorted(glob.glob("/tmp/conc/*/metrics.jsonl")):
    rows = [json.loads(l) for l in open(f)]
    sps = [r["samples_per_s"] for r in rows[3:]]
    print(f.split("/")[3], "steps", rows[-1]["step"], "median samples/s after step 30: %.0f" % statistics.median(sps),
          "=> %.0f ms/step" % (64e3 / statistics.median(sps)), "mse %.4f" % rows[-1]["mse"], "peak %.1f GiB" % rows[-1]["peak_mem_gib"])
PY
grep -h "backend" $OUT/conc-*.log | sort | uniq -c
echo "all done $(( $(date +%s) - t0 )) s"
