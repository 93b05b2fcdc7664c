t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/mamba_ssm-*.whl .gpu/decord-*.whl 2>&1 | tail -2
mkdir -p /tmp/mb && rm -rf /tmp/mb/mini && cp -a runs/mini /tmp/mb/mini && du -sh /tmp/mb/mini
PYTHONPATH=/tmp/site:$PWD python3 -c "import torch, mamba_ssm, decord; print(torch.__version__, torch.cuda.get_device_name(0))"
echo "setup $(( $(date +%s) - t0 )) s"
