"""PyTorch peer of `seesaw bench loss`: forward + backward of the Seesaw Loss of the PyTorch demo
peer (shared/peers/torch-demo/model.py: mmdetection's SeesawLoss as that peer runs it, without
mmcv) against F.cross_entropy, on the same workload: N = 512 random logits in [-3, 3), a quarter
foreground, avg_factor = N; median of 200 after 5 warm-ups; 2 threads. Run by hand, never in CI:
    python tools/bench_loss_torch.py PATH/TO/shared/peers/torch-demo
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "../shared/peers/torch-demo")
from model import SeesawLoss  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)


def time_it(make_loss, rows, c, width, iters=200):
    loss = make_loss()
    ts = []
    for it in range(iters + 5):
        x = (torch.rand(rows, width) * 6 - 3).requires_grad_()
        fg = torch.randint(0, c, (rows,))
        labels = torch.where(torch.arange(rows) % 4 == 0, fg, torch.full_like(fg, c))
        t0 = time.perf_counter()
        loss(x, labels).backward()
        _ = x.grad.sum().item()
        if it >= 5:
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


print("| N | C | CE fwd+bwd | Seesaw fwd+bwd | Seesaw / CE |")
print("|---|---|---|---|---|")
for c in (80, 1203):
    ce = time_it(lambda: (lambda x, y: F.cross_entropy(x, y, reduction="sum") / x.shape[0]), 512, c, c + 1)
    ss = time_it(lambda: SeesawLoss(c), 512, c, c + 2)
    print(f"| 512 | {c} | {ce:.2f} ms | {ss:.2f} ms | {ss / ce:.2f}x |")
