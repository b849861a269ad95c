"""Round trips between PyTorch and `seesaw weights`, at full size (not in CI: needs torch).

    /tmp/venv/bin/python tools/check_weights_torch.py target/release/seesaw

1. torchvision ResNet-50 and ResNet-101 (random weights, random BN statistics) -> `seesaw
   weights convert --from torchvision` into the shipped R50/R101 configs -> `seesaw weights
   export --layout torchvision` -> `resnet50().load_state_dict(..., strict=False)`: every
   tensor comes back bit for bit, and only `fc.*` is missing.
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


def check_torchvision(tmp, name, config):
    g = torch.Generator().manual_seed(1)
    net = getattr(torchvision.models, name)(weights=None).eval()
    make_weights.randomize(net, g)
    pth = os.path.join(tmp, f"{name}.pth")
    torch.save(net.state_dict(), pth)
    ckpt = os.path.join(tmp, f"{name}.ckpt")
    print(run("weights", "convert", pth, "--from", "torchvision", "--arch", config, "--out", ckpt).strip())
    st = os.path.join(tmp, f"{name}_back.safetensors")
    run("weights", "export", ckpt, "--layout", "torchvision", "--out", st)
    back = getattr(torchvision.models, name)(weights=None)
    missing, unexpected = back.load_state_dict(load_file(st), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected, (missing, unexpected)
    ref = net.state_dict()
    compared = 0
    for k, v in back.state_dict().items():
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(v, ref[k]), k
        compared += 1
    print(f"{name}: torchvision -> seesaw -> torchvision, {compared} tensors bit for bit")


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
        check_mmdet(tmp)
