"""Peer of `seesaw bench data`: a PyTorch DataLoader (2 workers) producing the same training
samples from the same annotation file: PNG decode (PIL), masks decoded (pycocotools), image and
masks resized to a short side drawn from 640-800 (long side <= 1333, keep ratio; bilinear /
nearest), horizontal flip with p 0.5, normalisation. Run by hand, never in CI:
    python tools/bench_data_torch.py --json DIR/train.json --images DIR [--batches 25 --batch 8]
"""
import argparse
import json
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


class Train(torch.utils.data.Dataset):
    def __init__(self, js, root):
        d = json.load(open(js))
        self.images = d["images"]
        self.root = root
        self.anns = {}
        for a in d["annotations"]:
            self.anns.setdefault(a["image_id"], []).append(a)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        im = self.images[i]
        img = torch.from_numpy(np.asarray(Image.open(f"{self.root}/{im['file_name']}").convert("RGB")))
        img = img.permute(2, 0, 1).float()
        h, w = img.shape[1:]
        short = random.choice([640, 672, 704, 736, 768, 800])
        f = min(short / min(h, w), 1333 / max(h, w))
        nh, nw = int(h * f + 0.5), int(w * f + 0.5)
        img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        anns = self.anns.get(im["id"], [])
        masks = np.stack([mask_utils.decode(a["segmentation"]) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        masks = F.interpolate(torch.from_numpy(masks)[None].float(), size=(nh, nw), mode="nearest")[0]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4) * f
        if random.random() < 0.5:
            img, masks = img.flip(-1), masks.flip(-1)
            boxes[:, 0] = nw - boxes[:, 0] - boxes[:, 2]
        return (img - MEAN) / STD, masks.to(torch.uint8), boxes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--batches", type=int, default=25)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(1)
    dl = torch.utils.data.DataLoader(Train(a.json, a.images), batch_size=a.batch, shuffle=True,
                                     num_workers=2, collate_fn=lambda x: x, persistent_workers=True)
    it = iter(dl)
    next(it)  # warm-up
    t0 = time.perf_counter()
    n = 0
    for _ in range(a.batches):
        try:
            n += len(next(it))
        except StopIteration:
            it = iter(dl)
            n += len(next(it))
    s = time.perf_counter() - t0
    print(f"torch DataLoader (2 workers): {n} training samples in {s:.2f} s: {n / s:.1f} images/s")


if __name__ == "__main__":
    main()
