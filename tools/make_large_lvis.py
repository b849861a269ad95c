#!/usr/bin/env python3
"""Writes an LVIS v1 train-sized annotation file (default: 100,170 images, 1,203 categories,
1.27 M polygon annotations, about 1.1 GB) for measuring load time and peak memory:

    python3 tools/make_large_lvis.py /tmp/lvis_large.json
    /usr/bin/time -v target/release/seesaw data stats /tmp/lvis_large.json

The content is random but well formed (it passes validation); only its size and shape matter.
"""
import json, math, random, sys

out = sys.argv[1]
n_img = int(sys.argv[2]) if len(sys.argv) > 2 else 100170
n_ann = int(sys.argv[3]) if len(sys.argv) > 3 else 1270141
n_cat = 1203
pts = 44  # polygon vertices per annotation: LVIS v1 train averages about this many bytes
rng = random.Random(0)
with open(out, "w") as f:
    f.write('{"info": {"description": "large synthetic LVIS-shaped file"}, "licenses": [], "images": [')
    for i in range(n_img):
        negs = sorted(rng.sample(range(1, n_cat + 1), 8))
        f.write(("," if i else "") + json.dumps({
            "id": i + 1, "width": 640, "height": 480,
            "coco_url": f"http://images.cocodataset.org/train2017/{i + 1:012d}.jpg",
            "neg_category_ids": negs, "not_exhaustive_category_ids": negs[:2]}))
    f.write('], "annotations": [')
    for a in range(n_ann):
        cx, cy, r = rng.uniform(60, 580), rng.uniform(60, 420), rng.uniform(5, 55)
        poly = []
        for k in range(pts):
            t = 2 * math.pi * k / pts
            rr = r * rng.uniform(0.7, 1.0)
            poly += [round(cx + rr * math.cos(t), 2), round(cy + rr * math.sin(t), 2)]
        xs, ys = poly[0::2], poly[1::2]
        x0, y0 = min(xs), min(ys)
        f.write(("," if a else "") + json.dumps({
            "id": a + 1, "image_id": rng.randint(1, n_img), "category_id": rng.randint(1, n_cat),
            "bbox": [x0, y0, round(max(xs) - x0, 2), round(max(ys) - y0, 2)],
            "area": round(math.pi * r * r * 0.7, 2), "segmentation": [poly]}))
    f.write('], "categories": [')
    f.write(",".join(json.dumps({
        "id": c, "name": f"cat_{c}", "synset": f"cat_{c}.n.01", "synonyms": [f"cat_{c}"],
        "def": "a category", "frequency": "rcf"[c % 3], "image_count": 1, "instance_count": 1})
        for c in range(1, n_cat + 1)))
    f.write("]}")
