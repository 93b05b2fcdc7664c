set -o pipefail
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/mamba_ssm-*.whl .gpu/decord-*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 COLUMNS=200 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 -c "import torch, mamba_ssm, decord; from models.scan import backend_in_use; print(torch.__version__, torch.cuda.get_device_name(0), 'scan', backend_in_use(), 'decord', decord.__version__)"
mkdir -p /tmp/mb && cp -a runs/mini /tmp/mb/mini && du -sh /tmp/mb/mini
nproc; free -g | head -2; df -h /tmp | tail -1
echo "setup $(( $(date +%s) - t0 )) s"
python3 .gpu/time_models.py 64 2>&1 | tee $OUT/time_models.txt
echo "timing done $(( $(date +%s) - t0 )) s"
D=/tmp/mb/mini/data/synthetic/prepared
for lr in 1e-4 3e-4 1e-3; do
  python3 -m harness.cli train --data $D --run-dir /tmp/probe-$lr --family matten --size s --patch 8 --frames 16 \
    --frame-interval 1 --image-size 32 --batch 64 --steps 300 --ckpt-every 300 --lr $lr --num-workers 4 \
    --device cuda --no-compile --precision bf16 > $OUT/train-$lr.log 2>&1 &
done
wait
echo "lr probe done $(( $(date +%s) - t0 )) s"
python3 - <<'PY'
import json
for lr in ("1e-4", "3e-4", "1e-3"):
    rows = [json.loads(l) for l in open(f"/tmp/probe-{lr}/metrics.jsonl")]
    print(lr, " ".join(f"{r.get('step')}:{r.get('mse', float('nan')):.4f}" for r in rows[::3]),
          "| mean mse last 50 steps %.4f" % (sum(r['mse'] for r in rows[-5:]) / 5), "max grad_norm %.3f" % max(r['grad_norm'] for r in rows))
    print("   last row:", rows[-1])
PY
python3 -m harness.cli sample --checkpoint /tmp/probe-1e-3 --out /tmp/probe-s --num 256 --batch-size 256 --sampler ddim \
  --steps 50 --cfg-scale 1 --precision bf16 --device cuda --no-mp4 2>&1 | grep -v "━" | tail -4
cp /tmp/probe-s/contact_sheet.png $OUT/sheet-1e-3.png 2>/dev/null
for lr in 1e-4 3e-4 1e-3; do tail -3 $OUT/train-$lr.log; done
echo "all done $(( $(date +%s) - t0 )) s"
