# tenth session, call B on nvidia-h200 (carry i3dcarry devtmp), within 30 s of devtmp/n5.sh: every probe-4 set's FVD
# in one process on the GPU, JSON lines to $OUT/p14d_fvd.jsonl.
t0=$(date +%s)
export PYTHONPATH=/tmp/site:/tmp/mbcode PYTHONUNBUFFERED=1 COLUMNS=160 MATTEN_BENCH_CACHE=/tmp/mbcache
mkdir -p /tmp/mbcache/i3d && cp i3dcarry/i3d-kinetics-400.safetensors /tmp/mbcache/i3d/
cd /tmp/mbcode && timeout ${LIM:-400} python3 devtmp/fvd_dev.py /tmp/mb/mini/data/synthetic/prepared /tmp/mb/mini/probe4 cuda > $OUT/fvd.log 2>&1
grep '^{' $OUT/fvd.log | tee $OUT/p14d_fvd.jsonl; tail -3 $OUT/fvd.log | cut -c1-300; echo "call B $(( $(date +%s) - t0 )) s"
