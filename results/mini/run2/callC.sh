export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 COLUMNS=160 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 MATTEN_BENCH_CACHE=/tmp/mbcache
mkdir -p /tmp/mbcache/i3d && cp i3dcarry/i3d-kinetics-400.safetensors /tmp/mbcache/i3d/
rm -rf /tmp/mbcode && cp -a $PWD /tmp/mbcode && rm -rf /tmp/mbcode/i3dcarry   # the code the run uses, fixed for its whole length
cd /tmp/mbcode && export PYTHONPATH=/tmp/site:/tmp/mbcode
git log --oneline | head -1; git status --short | head -5
date -u > /tmp/mb/started
(nvidia-smi dmon -s um -d 5 > /tmp/mb/dmon.txt 2>&1 &)
setsid nohup bash -c 'python3 -m harness.cli run --table all --scale mini --run-dir /tmp/mb/mini --results-dir /tmp/mb/results-mini > /tmp/mb/run.log 2>&1; echo "exit $?" >> /tmp/mb/run.log; date -u >> /tmp/mb/run.log' > /dev/null 2>&1 &
for i in $(seq 1 55); do sleep 10; if grep -q "^exit " /tmp/mb/run.log; then break; fi; done
grep -v "━" /tmp/mb/run.log | tail -30
for f in /tmp/mb/mini/exp/*/metrics.jsonl; do echo "$f $(tail -1 $f | cut -c1-90)"; done
tail -3 /tmp/mb/dmon.txt
