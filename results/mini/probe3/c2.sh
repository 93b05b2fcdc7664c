t0=$(date +%s); lim=${1:-530}
mkdir -p /tmp/mbcache/i3d && cp i3dcarry/i3d-kinetics-400.safetensors /tmp/mbcache/i3d/.part && mv /tmp/mbcache/i3d/.part /tmp/mbcache/i3d/i3d-kinetics-400.safetensors && echo weights in place
while [ $(( $(date +%s) - t0 )) -lt $lim ]; do
  n=$(grep -l '"ddpm-250"' /tmp/p14/*.log 2>/dev/null | wc -l); [ "$n" -ge 3 ] && break
  pgrep -f devtmp/p14.py > /dev/null || break
  sleep 5
done
for f in /tmp/p14/*.log; do echo "== $f"; grep -v "━\|^warning" $f | tail -12 | cut -c1-400; done
for f in /tmp/mb/mini/probe/*/metrics.jsonl; do echo "$(basename $(dirname $f)) $(tail -1 $f | cut -c1-160)"; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
cd /tmp/mb/mini/probe && find . -name "*.json*" -o -name "contact_sheet.png" | grep -v /clips/ | tar czf $OUT/p14.tgz -T - ; cp /tmp/p14/*.log $OUT/ ; ls $OUT
echo "call $(( $(date +%s) - t0 )) s"
