#!/usr/bin/env python3
"""Runs one peer evaluator on an LVIS ground truth and result file, the way its users run it,
and prints its stats and wall time (the process itself is timed by bench_eval.sh).

    eval_peer.py TOOL GT DT bbox|segm|boundary
    TOOL: hotcoco | faster-coco-eval | lvis-api | boundary-iou-api (boundary only)

Needs, in a scratch venv (never in CI): pip install hotcoco faster-coco-eval lvis pycocotools numpy
opencv-python-headless; for boundary-iou-api, a checkout of github.com/bowenc0221/boundary-iou-api
on PYTHONPATH (it is not on PyPI).
"""
import contextlib, io, json, sys, time

import numpy as np

if not hasattr(np, "float"):
    np.float = float  # lvis-api 0.5.3 uses the alias numpy 1.24 removed

tool, gt_path, dt_path, iou = sys.argv[1:5]
t0 = time.time()
with contextlib.redirect_stdout(io.StringIO()):
    if tool == "hotcoco":
        from hotcoco import COCO, COCOeval
        gt = COCO(gt_path)
        ev = COCOeval(gt, gt.load_res(dt_path), iou, lvis_style=True)
        ev.run()
        stats = ev.get_results()
    elif tool == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster
        gt = COCO(gt_path)
        ev = COCOeval_faster(gt, gt.loadRes(dt_path), iou, lvis_style=True, print_function=print)
        ev.run()
        stats = dict(ev.stats_as_dict)
    elif tool == "lvis-api":
        from lvis import LVIS, LVISEval, LVISResults
        gt = LVIS(gt_path)
        ev = LVISEval(gt, LVISResults(gt, dt_path), iou_type=iou)
        ev.run()
        stats = dict(ev.get_results())
    elif tool == "boundary-iou-api":
        from boundary_iou.lvis_instance_api.lvis import LVIS
        from boundary_iou.lvis_instance_api.results import LVISResults
        from boundary_iou.lvis_instance_api.eval import LVISEval
        gt = LVIS(gt_path)
        ev = LVISEval(gt, LVISResults(gt, dt_path), iou_type=iou)
        ev.run()
        stats = dict(ev.get_results())
    else:
        sys.exit(f"unknown tool {tool}")
print(json.dumps({"tool": tool, "iou_type": iou, "seconds": time.time() - t0,
                  "stats": {k: float(v) for k, v in stats.items()}}))
