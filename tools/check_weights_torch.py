"""Round trips between PyTorch and `seesaw weights`, at full size (not in CI: needs torch).

    /tmp/venv/bin/python tools/check_weights_torch.py target/release/seesaw

1. torchvision ResNet-50 and ResNet-101 (random weights, random BN statistics) -> `seesaw
   weights convert --from torchvision` into the shipped R50/R101 configs -> `seesaw weights
   export --layout torchvision` -> `resnet50().load_state_dict(..., strict=False)`: every
   tensor comes back bit for bit, and only `fc.*` is missing. The same for torchvision's
   ResNeXt-101 64x4d into the X101-64x4d config, and timm's ResNeSt-101e / -200e (deep stem in
   timm's names) into the S101 and the deck's S200 + DCNv2 HTC-Lite configs (the DCN offset
   convs, absent from timm's file, start at zero and are the only extra tensors exported).
   (Forward equality with PyTorch is covered by the fixture tests, at small size.)
2. An mmdetection-3.x-style checkpoint of the fixture Mask R-CNN (make_weights.py's modules)
   with the extras real ones carry (`optimizer` state, `message_hub` with numpy values, meta
   with numpy arrays) -> convert -> export -> `load_state_dict(strict=True)` into the PyTorch
   module -> identical outputs.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "crates/seesaw-model/tests/fixtures/weights"))
import make_weights  # noqa: E402

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/seesaw"))


def run(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"seesaw {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout + out.stderr


def torchvision_net(name):
    return lambda: getattr(torchvision.models, name)(weights=None)


def timm_net(name):
    import timm
    return lambda: timm.create_model(name, pretrained=False)


def check_torchvision(tmp, name, config, make=None, source="torchvision"):
    make = make or torchvision_net(name)
    g = torch.Generator().manual_seed(1)
    net = make().eval()
    randomize_norms(net, g) if source == "timm" else make_weights.randomize(net, g)
    pth = os.path.join(tmp, f"{name}.pth")
    torch.save(net.state_dict(), pth)
    ckpt = os.path.join(tmp, f"{name}.ckpt")
    print(run("weights", "convert", pth, "--from", source, "--arch", config, "--out", ckpt).strip())
    st = os.path.join(tmp, f"{name}_back.safetensors")
    run("weights", "export", ckpt, "--layout", "torchvision", "--out", st)
    back = make()
    missing, unexpected = back.load_state_dict(load_file(st), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in unexpected if ".conv_offset." not in k]
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected, (missing, unexpected)
    ref = net.state_dict()
    compared = 0
    for k, v in back.state_dict().items():
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(v, ref[k]), k
        compared += 1
    print(f"{name}: {source} -> seesaw -> {source}, {compared} tensors bit for bit")


def randomize_norms(net, g):
    """Random weights everywhere and random BN statistics, whatever the modules are called."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)


def check_mmdet(tmp):
    g = torch.Generator().manual_seed(2)
    net = make_weights.Detector("mask_rcnn", normed_mask=True).eval()
    make_weights.randomize(net, g)
    sd = net.state_dict()
    ckpt = {
        "meta": {
            "mmdet_version": "3.3.0",
            "dataset_meta": {"classes": tuple(f"c{i}" for i in range(5)), "palette": [(1, 2, 3)] * 5},
            "seed": np.int64(7),
            "hook_msgs": {"last_ckpt": "work_dirs/epoch_24.pth"},
        },
        "state_dict": sd,
        "optimizer": torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9).state_dict(),
        "message_hub": {"log_scalars": {"train/lr": np.array([0.02, 0.002])}, "runtime_info": {"epoch": 24}},
    }
    pth = os.path.join(tmp, "mmdet3.pth")
    torch.save(ckpt, pth)
    arch = os.path.join(ROOT, "crates/seesaw/tests/fixtures/small_mask_rcnn_weights.toml")
    ours = os.path.join(tmp, "mmdet3.ckpt")
    print(run("weights", "convert", pth, "--from", "mmdet", "--arch", arch, "--out", ours).strip())
    st = os.path.join(tmp, "mmdet3_back.safetensors")
    run("weights", "export", ours, "--out", st)
    back = make_weights.Detector("mask_rcnn", normed_mask=True).eval()
    # strict: BatchNorm fills in its `num_batches_tracked` counters, which are not exported.
    back.load_state_dict(load_file(st), strict=True)
    x = torch.randn(1, 3, 64, 96, generator=g)
    roi = torch.randn(4, 16, 7, 7, generator=g)
    with torch.no_grad():
        a = net.neck(net.backbone.stages(x)) + list(net.roi_head.bbox_head(roi))
        b = back.neck(back.backbone.stages(x)) + list(back.roi_head.bbox_head(roi))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    print(f"mmdet 3.x checkpoint with optimizer/message_hub: -> seesaw -> PyTorch, {len(sd)} tensors, outputs identical")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        check_torchvision(tmp, "resnet50", os.path.join(ROOT, "configs/mask_rcnn_r50_fpn_seesaw_2x_lvis.toml"))
        check_torchvision(tmp, "resnet101", os.path.join(ROOT, "configs/mask_rcnn_r101_fpn_seesaw_2x_lvis.toml"))
        check_torchvision(tmp, "resnext101_64x4d",
                          os.path.join(ROOT, "configs/mask_rcnn_x101_64x4d_fpn_seesaw_2x_lvis.toml"))
        check_torchvision(tmp, "resnest101e", os.path.join(ROOT, "configs/mask_rcnn_s101_fpn_seesaw_2x_lvis.toml"),
                          timm_net("resnest101e"), "timm")
        check_torchvision(tmp, "resnest200e",
                          os.path.join(ROOT, "configs/htc_lite_s200_dcnv2_fpn_seesaw_2x_lvis.toml"),
                          timm_net("resnest200e"), "timm")
        check_mmdet(tmp)
