"""Peer of `seesaw bench step`: one training iteration (forward, backward, SGD step) and one
inference of torchvision's maskrcnn_resnet50_fpn (from scratch, 91 classes) on a random
800x1333 image with the same four box-shaped instances; peak resident memory.

`--backbone` swaps the ResNet-50 for the same Mask R-CNN on another backbone, built from
torchvision's and timm's own modules: x101_32x4d (torchvision's ResNet code with groups 32,
width_per_group 4), s101 (timm's resnest101e), r50_dcnv2 (torchvision's ResNet-50 with each
3x3 conv of layer2-4 a DCNv2 through torchvision.ops.deform_conv2d, offsets and masks from a
zero-initialised 3x3 conv as mmcv's ModulatedDeformConv2dPack). Every layer trains, batch-norm
in train mode, as maskrcnn_resnet50_fpn from scratch does; except s101, whose BN layers stay
in eval mode (mmdetection's norm_eval, as our recipes): the split attention's BN sees one value
per channel at batch 1, which PyTorch refuses to train.

Run by hand in a developer session (torch + torchvision + timm from PyPI), never in CI:
    python tools/bench_maskrcnn_torch.py [--height 800 --width 1333 --iters 3] [--backbone r50]
"""
import argparse
import resource
import statistics
import time

import torch
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops import deform_conv2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


class DCNv2(torch.nn.Module):
    """mmcv's ModulatedDeformConv2dPack in torch + torchvision: offsets (2 x 9) and mask
    logits (9) from a zero-initialised conv; the deformable conv keeps `conv`'s weight."""

    def __init__(self, conv):
        super().__init__()
        self.weight = conv.weight
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups
        self.conv_offset = torch.nn.Conv2d(conv.in_channels, 27, 3, conv.stride, conv.padding)
        torch.nn.init.zeros_(self.conv_offset.weight)
        torch.nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x):
        o1, o2, m = torch.chunk(self.conv_offset(x), 3, dim=1)
        return deform_conv2d(x, torch.cat((o1, o2), 1), self.weight, None, self.stride,
                             self.padding, mask=torch.sigmoid(m))


def backbone_body(name):
    if name == "x101_32x4d":
        return ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4)
    if name == "s101":
        import timm
        return timm.create_model("resnest101e", pretrained=False)
    if name == "r50_dcnv2":
        body = torchvision.models.resnet50()
        for layer in (body.layer2, body.layer3, body.layer4):
            for block in layer:
                block.conv2 = DCNv2(block.conv2)
        return body
    raise SystemExit(f"unknown --backbone {name}")


def build(name, h, w):
    # min_size/max_size keep the image at h x w (no resize), as our bench feeds it.
    size = dict(min_size=h, max_size=max(h, w))
    if name == "r50":
        return torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, **size)
    layers = {f"layer{i + 1}": str(i) for i in range(4)}
    fpn = BackboneWithFPN(backbone_body(name), layers, [256, 512, 1024, 2048], 256,
                          extra_blocks=LastLevelMaxPool())
    return MaskRCNN(fpn, num_classes=91, **size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--width", type=int, default=1333)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--backbone", default="r50", help="r50, x101_32x4d, s101 or r50_dcnv2")
    a = ap.parse_args()
    torch.manual_seed(0)
    h, w = a.height, a.width
    model = build(a.backbone, h, w)
    rel = [[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.8], [0.3, 0.6, 0.45, 0.75], [0.05, 0.7, 0.12, 0.8]]
    boxes = torch.tensor([[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b in rel])
    masks = torch.zeros(len(rel), h, w, dtype=torch.uint8)
    for k, b in enumerate(boxes.int().tolist()):
        masks[k, b[1]:b[3], b[0]:b[2]] = 1
    target = {"boxes": boxes, "labels": torch.tensor([1, 8, 15, 22]), "masks": masks}
    image = torch.randn(3, h, w)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
    model.train()
    if a.backbone == "s101":
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
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
    print(f"torchvision Mask R-CNN {a.backbone}-FPN {h}x{w}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"train step: median {statistics.median(steps):.3f} s of {a.iters}")
    print(f"inference: median {statistics.median(infer):.3f} s")
    print(f"peak resident memory: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
