"""Peer of BENCHMARKS.md's data-parallel rows: the demo's PyTorch peer (BENCHMARKS.md, "The demo
recipe against its PyTorch peer": its `model.py` and `train_eval.py`, passed as --peer) trained
with DistributedDataParallel over gloo on 1 and 2 CPU processes of this machine, the global
batch of 8 constant (8 / world images per process), Seesaw Loss, SGD as the peer's recipe, every
process with `--threads` threads (as each of our ranks uses every core), or `threads / world`
with `--split-threads`. Prints seconds per
iteration at each world size.

PyTorch's SyncBatchNorm needs a GPU, so the peer's batch norms stay per process; compare with
`seesaw train` under `mpirun` with `norm.type = "bn"` (the default demo).

Run by hand in a developer session (torch + torchvision from PyPI), never in CI:
    python tools/bench_ddp_torch.py --peer PEER_DIR --data PEER_DATA [--iters 20]
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world, a, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(a.port + world)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(max(1, a.threads // world) if a.split_threads else a.threads)
    sys.path.insert(0, a.peer)
    import model as M
    import train_eval as T

    imgs, tg, _ = T.load_split(a.data, "train")
    torch.manual_seed(0)
    m = M.build_model(40, "seesaw", img_size=imgs.shape[-1])
    m.train()
    ddp = torch.nn.parallel.DistributedDataParallel(m, find_unused_parameters=False)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(1000 + rank)
    per = 8 // world

    def step():
        ids = rng.integers(0, len(imgs), per)
        bi, bt = T.get_batch(imgs, tg, ids, rng.random(per) < 0.5)
        loss = sum(ddp(bi, bt).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()

    for _ in range(3):
        step()
    dist.barrier()
    t = time.time()
    for _ in range(a.iters):
        step()
    dist.barrier()
    if rank == 0:
        out[world] = (time.time() - t) / a.iters
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True, help="the demo peer's directory")
    ap.add_argument("--data", required=True, help="data made by the peer's gen_data.py")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=29511)
    ap.add_argument("--split-threads", action="store_true",
                    help="each of N processes takes threads / N threads")
    a = ap.parse_args()
    out = mp.Manager().dict()
    for world in (1, 2):
        mp.spawn(worker, args=(world, a, out), nprocs=world, join=True)
        print(f"world {world}: {out[world]:.3f} s/iteration", flush=True)
    print(f"ratio world 2 / world 1: {out[2] / out[1]:.2f}")


if __name__ == "__main__":
    main()
