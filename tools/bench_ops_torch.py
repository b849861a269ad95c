#!/usr/bin/env python3
"""torchvision peer of `seesaw bench ops`: the same boxes and RoIs (same formulas), NMS,
RoIAlign forward + backward (4 FPN levels, mmdetection's level mapping), convolutions forward +
backward on Mask R-CNN's shapes, mask paste, median of N runs,
2 threads. pip install torch torchvision; python3 tools/bench_ops_torch.py [iters]"""
import math, statistics, sys, time

import torch
import torch.nn.functional as F
from torchvision.ops import nms, roi_align

torch.set_num_threads(2)
iters = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def bench_box(i):
    cx, cy = float(i * 7919 % 1333), float(i * 104729 % 800)
    w, h = 20.0 + i * 31 % 80, 20.0 + i * 17 % 80
    score = ((i * 2654435761) % (1 << 64) % 1000) / 1000.0
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], score


def bench_roi(i):
    x1, y1 = float(i * 7919 % 1200), float(i * 104729 % 700)
    w, h = 16.0 + i * 37 % 400, 16.0 + i * 53 % 300
    return [0.0, x1, y1, min(x1 + w, 1333.0), min(y1 + h, 800.0)]


def median_ms(fn, setup=lambda: None):
    fn(setup())
    ts = []
    for _ in range(iters):
        arg = setup()
        t0 = time.perf_counter()
        fn(arg)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


print("| op | size | torchvision (median) |")
print("|---|---|---|")
for n in (10000, 100000):
    bs = [bench_box(i) for i in range(n)]
    boxes = torch.tensor([b for b, _ in bs], dtype=torch.float32)
    scores = torch.tensor([s for _, s in bs], dtype=torch.float32)
    kept = len(nms(boxes, scores, 0.5))
    print(f"| nms (IoU 0.5) | {n} boxes, {kept} kept | {median_ms(lambda _: nms(boxes, scores, 0.5)):.1f} ms |")

sizes = [(200, 334), (100, 167), (50, 84), (25, 42)]
strides = [4, 8, 16, 32]
rois = torch.tensor([bench_roi(i) for i in range(512)], dtype=torch.float32)
scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
levels = torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(0, 3).long()
for out in (7, 14):
    def setup():
        return [torch.rand(1, 256, h, w, requires_grad=True) for h, w in sizes]

    def step(feats):
        parts = []
        for l, f in enumerate(feats):
            sel = rois[levels == l]
            if len(sel):
                parts.append(roi_align(f, sel, (out, out), 1.0 / strides[l], 0, True))
        torch.cat(parts).sum().backward()
    print(f"| RoIAlign fwd+bwd, 4 FPN levels, 256 ch | 512 RoIs, {out}x{out} | {median_ms(step, setup):.1f} ms |")

# Convolutions forward + backward (input, weight, bias gradients), the shapes of
# `CONV_ROWS` in crates/seesaw/src/bench/ops.rs.
CONV_ROWS = [
    ("mask head 3x3 conv", (128, 256, 14, 14), 256, 3, 1, 1, False),
    ("mask head 2x2 deconv, stride 2", (128, 256, 14, 14), 256, 2, 2, 0, True),
    ("R50 stage 1, 3x3 conv", (1, 64, 200, 336), 64, 3, 1, 1, False),
    ("R50 stage 1, 1x1 conv", (1, 256, 200, 336), 64, 1, 1, 0, False),
    ("R50 stage 4, 3x3 conv, stride 2", (1, 512, 50, 84), 512, 3, 2, 1, False),
]
for what, (n, c, h, w), co, k, s, p, transposed in CONV_ROWS:
    def setup():
        wshape = (c, co, k, k) if transposed else (co, c, k, k)
        return (torch.rand(n, c, h, w, requires_grad=True), torch.rand(*wshape, requires_grad=True),
                torch.rand(co, requires_grad=True))

    def step(args):
        x, wt, b = args
        y = (F.conv_transpose2d(x, wt, b, stride=s, padding=p) if transposed
             else F.conv2d(x, wt, b, stride=s, padding=p))
        y.sum().backward()
    print(f"| {what} fwd+bwd | {n}x{c}x{h}x{w} -> {co} ch, {k}x{k} | {median_ms(step, setup):.1f} ms |")

# DCNv2 forward (inference) and forward + backward, the shapes of `DCN_ROWS` in
# crates/seesaw/src/bench/ops.rs: offsets uniform in [-2, 2], masks in [0, 1].
from torchvision.ops import deform_conv2d

for what, (n, c, h, w) in [("R50 stage 2 DCNv2 3x3", (1, 128, 64, 64)),
                           ("R50 stage 4 DCNv2 3x3", (1, 512, 16, 16))]:
    for backward in (False, True):
        def setup():
            t = [torch.rand(n, c, h, w), torch.rand(n, 18, h, w) * 4 - 2, torch.rand(n, 9, h, w),
                 torch.rand(c, c, 3, 3)]
            return [x.requires_grad_(backward) for x in t]

        def step(args):
            x, off, mask, wt = args
            if backward:
                deform_conv2d(x, off, wt, None, padding=1, mask=mask).sum().backward()
            else:
                with torch.no_grad():
                    deform_conv2d(x, off, wt, None, padding=1, mask=mask)
        kind = "fwd+bwd" if backward else "fwd"
        print(f"| {what} {kind} | {n}x{c}x{h}x{w} -> {c} ch | {median_ms(step, setup):.1f} ms |")

# The FPN's 2x top-down upsampling at P3 -> P2 sizes (`upsample_rows` in
# crates/seesaw/src/bench/ops.rs): nearest, bilinear, CARAFE's reassembly given softmaxed 5x5
# kernels, and the whole CARAFEPack (1x1 compressor to 64, 3x3 encoder to 100, pixel shuffle,
# softmax, reassembly), forward + backward. mmcv's CUDA op does not install on CPU: the
# reassembly is built from unfold, out[n, c, h*2+i, w*2+j] = sum_k unfold(x)[n, c, k, h, w] *
# kernels[n, k, h*2+i, w*2+j], as one einsum.


def carafe_unfold(x, kernels, k=5, s=2):
    n, c, h, w = x.shape
    unf = F.unfold(x, k, padding=(k - 1) // 2).view(n, c, k * k, h, w)
    m = kernels.view(n, k * k, h, s, w, s)
    return torch.einsum("nckhw,nkhiwj->nchiwj", unf, m).reshape(n, c, h * s, w * s)


class CarafePack(torch.nn.Module):
    def __init__(self, c, cc=64, k=5, ek=3, s=2):
        super().__init__()
        self.k, self.s = k, s
        self.channel_compressor = torch.nn.Conv2d(c, cc, 1)
        self.content_encoder = torch.nn.Conv2d(cc, k * k * s * s, ek, padding=(ek - 1) // 2)

    def forward(self, x):
        n, _, h, w = x.shape
        m = F.pixel_shuffle(self.content_encoder(self.channel_compressor(x)), self.s)
        m = F.softmax(m, dim=1)
        return carafe_unfold(x, m, self.k, self.s)


n, c, h, w = 1, 256, 100, 168
pack = CarafePack(c)
for what in ["nearest 2x", "bilinear 2x", "CARAFE reassembly (k 5)", "CARAFEPack (FPN_CARAFE)"]:
    def setup():
        return (torch.rand(n, c, h, w, requires_grad=True),
                F.softmax(torch.rand(n, 25, 2 * h, 2 * w), dim=1).requires_grad_(True))

    def step(args, what=what):
        x, kernels = args
        if what == "nearest 2x":
            y = F.interpolate(x, scale_factor=2, mode="nearest")
        elif what == "bilinear 2x":
            y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        elif what.startswith("CARAFE reassembly"):
            y = carafe_unfold(x, kernels)
        else:
            y = pack(x)
        y.sum().backward()
    print(f"| {what} fwd+bwd | {n}x{c}x{h}x{w} -> {2 * h}x{2 * w} | {median_ms(step, setup):.1f} ms |")

# Mask paste: 300 masks of 28x28 probabilities into an 800x1333 image (mmdetection's
# grid-sample paste, align_corners=False, one batched call), threshold 0.5.

masks = torch.tensor([[((k * 31 + p * 7) % 100) / 100.0 for p in range(28 * 28)] for k in range(300)])
masks = masks.reshape(300, 1, 28, 28)
pboxes = torch.tensor([bench_roi(k)[1:] for k in range(300)])


def paste(_):
    x0, y0, x1, y1 = [pboxes[:, i:i + 1] for i in range(4)]
    ys = torch.arange(800, dtype=torch.float32) + 0.5
    xs = torch.arange(1333, dtype=torch.float32) + 0.5
    gy = (ys[None, :] - y0) / (y1 - y0) * 2 - 1
    gx = (xs[None, :] - x0) / (x1 - x0) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(300, 800, 1333), gy[:, :, None].expand(300, 800, 1333)], 3)
    out = F.grid_sample(masks, grid, align_corners=False) >= 0.5
    return int(out.sum())


area = paste(None)
print(f"| mask paste | 300 masks 28x28 into 800x1333 ({area} px set) | {median_ms(paste):.1f} ms |")
