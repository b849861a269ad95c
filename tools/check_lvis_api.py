#!/usr/bin/env python3
"""Checks, once in a developer session (never in CI), that the official lvis-api reads the
built-in dataset: it loads train.json and val.json, and evaluating val's ground truth as
detections (score 1) gives AP 1.0 for boxes and masks.

    pip install lvis pycocotools numpy
    seesaw data synth --out /tmp/synth && python3 tools/check_lvis_api.py /tmp/synth
"""
import json, os, sys
import numpy as np

if not hasattr(np, "float"):  # lvis 0.5.3 uses np.float, gone from numpy >= 1.24
    np.float = float
from lvis import LVIS, LVISEval, LVISResults

d = sys.argv[1]
train = LVIS(os.path.join(d, "train.json"))
val = LVIS(os.path.join(d, "val.json"))
print(f"train: {len(train.get_img_ids())} images, {len(train.get_ann_ids())} annotations")
print(f"val:   {len(val.get_img_ids())} images, {len(val.get_ann_ids())} annotations")
dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
         "segmentation": a["segmentation"], "score": 1.0} for a in val.load_anns(val.get_ann_ids())]
for iou in ("bbox", "segm"):
    ev = LVISEval(val, LVISResults(val, dets), iou_type=iou)
    ev.run()
    res = ev.get_results()
    print(iou, {k: round(v, 4) for k, v in res.items()})
    assert abs(res["AP"] - 1.0) < 1e-9, res
print("lvis-api accepts the dataset")
