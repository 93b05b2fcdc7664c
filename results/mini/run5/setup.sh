set -o pipefail
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/mamba_ssm-*.whl .gpu/decord-*.whl 2>&1 | tail -2
mkdir -p /tmp/mb && rm -rf /tmp/mb/mini && cp -a runs/mini /tmp/mb/mini && du -sh /tmp/mb/mini
rm -rf /tmp/mbcode && mkdir /tmp/mbcode && tar cf - --exclude=./.gpu --exclude=./runs --exclude=./i3dcarry . | tar xf - -C /tmp/mbcode
cd /tmp/mbcode && git log --oneline | head -1; git status --short | head -5
export PYTHONPATH=/tmp/site:/tmp/mbcode
python3 -c "import torch, mamba_ssm, decord; from models.scan import backend_in_use; print(torch.__version__, torch.cuda.get_device_name(0), 'scan', backend_in_use(), 'decord', decord.__version__)"
nproc; free -g | head -2; df -h /tmp | tail -1; which nvidia-cuda-mps-control
cp .gpu/mP.sh .gpu/mB.sh /tmp/ && echo "setup $(( $(date +%s) - t0 )) s"
