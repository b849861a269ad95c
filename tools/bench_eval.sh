#!/usr/bin/env bash
# Times `seesaw eval` and its peers on one LVIS-val-sized case, in one run, on this machine.
#   tools/bench_eval.sh DIR [PYTHON]
# DIR holds lvis_gt.json / lvis_dt.json, made by the shared reference generator:
#   gen.py --format lvis --images 5000 --cats 1203 --anns-per-img 12 --dets-per-img 300 \
#          --seed 1 --out-gt DIR/lvis_gt.json --out-dt DIR/lvis_dt.json
# PYTHON: an interpreter with hotcoco, faster-coco-eval and lvis installed (tools/eval_peer.py).
# Set SKIP_LVIS_API=1 to leave out lvis-api (about 150 s per run). Boundary AP is timed for seesaw;
# BOUNDARY_IOU_API=1 adds boundary-iou-api (not on PyPI: a checkout on PYTHONPATH; about 100 s per
# 500 images on 2 cores).
set -euo pipefail
dir=$1
py=${2:-python3}
here=$(cd "$(dirname "$0")" && pwd)
seesaw=${SEESAW:-$here/../target/release/seesaw}
row() { # tool iou command...
  local tool=$1 iou=$2; shift 2
  local tf; tf=$(mktemp)
  /usr/bin/time -o "$tf" -f "%e %M" "$@" > /dev/null 2>&1
  read -r secs kb < "$tf"; rm -f "$tf"
  printf '| %s | %s | %s s | %s GiB |\n' "$tool" "$iou" "$secs" "$(awk "BEGIN{printf \"%.2f\", $kb/1048576}")"
}
echo "| tool | IoU | wall | peak RSS |"
echo "|---|---|---|---|"
for iou in bbox segm; do
  row seesaw "$iou" "$seesaw" eval --gt "$dir/lvis_gt.json" --results "$dir/lvis_dt.json" --iou-type "$iou"
  row hotcoco "$iou" "$py" "$here/eval_peer.py" hotcoco "$dir/lvis_gt.json" "$dir/lvis_dt.json" "$iou"
  row faster-coco-eval "$iou" "$py" "$here/eval_peer.py" faster-coco-eval "$dir/lvis_gt.json" "$dir/lvis_dt.json" "$iou"
  if [ "${SKIP_LVIS_API:-0}" != 1 ]; then
    row lvis-api "$iou" "$py" "$here/eval_peer.py" lvis-api "$dir/lvis_gt.json" "$dir/lvis_dt.json" "$iou"
  fi
done
row seesaw boundary "$seesaw" eval --gt "$dir/lvis_gt.json" --results "$dir/lvis_dt.json" --iou-type boundary
if [ "${BOUNDARY_IOU_API:-0}" = 1 ]; then
  row boundary-iou-api boundary "$py" "$here/eval_peer.py" boundary-iou-api "$dir/lvis_gt.json" "$dir/lvis_dt.json" boundary
fi
