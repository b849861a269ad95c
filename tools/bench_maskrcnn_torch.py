"""Peer of `seesaw bench step`: one training iteration (forward, backward, SGD step) and one
inference of torchvision's maskrcnn_resnet50_fpn (from scratch, 91 classes) on a random
800x1333 image with the same four box-shaped instances; peak resident memory.

Run by hand in a developer session (torch + torchvision from PyPI), never in CI:
    python tools/bench_maskrcnn_torch.py [--height 800 --width 1333 --iters 3]
"""
import argparse
import resource
import statistics
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1333)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    h, w = a.height, a.width
    # min_size/max_size keep the image at h x w (no resize), as our bench feeds it.
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=h, max_size=max(h, w))
    rel = [[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.8], [0.3, 0.6, 0.45, 0.75], [0.05, 0.7, 0.12, 0.8]]
    boxes = torch.tensor([[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b in rel])
    masks = torch.zeros(len(rel), h, w, dtype=torch.uint8)
    for k, b in enumerate(boxes.int().tolist()):
        masks[k, b[1]:b[3], b[0]:b[2]] = 1
    target = {"boxes": boxes, "labels": torch.tensor([1, 8, 15, 22]), "masks": masks}
    image = torch.randn(3, h, w)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
    model.train()
    steps = []
    for i in range(a.iters + 1):
        t0 = time.perf_counter()
        losses = model([image], [target])
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        if i > 0:
            steps.append(time.perf_counter() - t0)
    model.eval()
    infer = []
    with torch.no_grad():
        for i in range(a.iters + 1):
            t0 = time.perf_counter()
            model([torch.randn(3, h, w)])
            if i > 0:
                infer.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torchvision maskrcnn_resnet50_fpn {h}x{w}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"train step: median {statistics.median(steps):.3f} s of {a.iters}")
    print(f"inference: median {statistics.median(infer):.3f} s")
    print(f"peak resident memory: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
