t0=$(date +%s)
cp devtmp/mP.sh /tmp/mP.sh
export PYTHONPATH=/tmp/site:/tmp/mbcode PYTHONUNBUFFERED=1 COLUMNS=160 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 MATTEN_BENCH_CACHE=/tmp/mbcache
mkdir -p /tmp/mbcache/i3d && cp i3dcarry/i3d-kinetics-400.safetensors /tmp/mbcache/i3d/ && ls -la /tmp/mbcache/i3d
cd /tmp/mbcode
date -u > /tmp/mb/started
(nvidia-smi dmon -s um -d 5 > /tmp/mb/dmon.txt 2>&1 &)
setsid nohup bash -c 'python3 -m harness.cli run --table all --scale mini --run-dir /tmp/mb/mini --results-dir /tmp/mb/results-mini --mps > /tmp/mb/run.log 2>&1; echo "exit $?" >> /tmp/mb/run.log; date -u >> /tmp/mb/run.log' > /dev/null 2>&1 &
sleep 2
bash /tmp/mP.sh ${1:-520}
