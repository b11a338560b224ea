"""CPU train-step time of the 3D networks: ResUNet3D (ours) vs MONAI BasicUNet / DynUNet.

Times forward + backward + AdamW on random data and counts how many
convolutions fell back to PyTorch's slow ``slow_conv3d`` path instead of
oneDNN. Wall-clock on shared machines is noisy: run twice and compare.

    python benchmarks/unet_step_time.py --window 8,128,128 --steps 3
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from napari_anatomics.models.unet3d import ResUNet3D, plan_levels


def _models(window, voxel, width):
    kernels, strides = plan_levels(voxel, 4, window[0])
    yield "ResUNet3D batchnorm", lambda: ResUNet3D(1, 2, kernels, strides, width, "batch")
    yield "ResUNet3D instancenorm", lambda: ResUNet3D(1, 2, kernels, strides, width, "instance")
    try:
        from monai.networks.nets import BasicUNet, DynUNet
    except ImportError:  # monai is a benchmark-only extra
        return
    feats = (width, width, 2 * width, 4 * width, 8 * width, width)
    # BasicUNet pools (2,2,2) four times: needs z >= 16, so give it its own window.
    yield "MONAI BasicUNet", lambda: BasicUNet(3, 1, 2, features=feats)
    yield (
        "MONAI DynUNet (same plan)",
        lambda: DynUNet(
            3,
            1,
            2,
            kernel_size=kernels,
            strides=[(1, 1, 1), *strides],
            upsample_kernel_size=strides,
            filters=[min(width * 2**i, 8 * width) for i in range(4)],
            res_block=True,
        ),
    )


def step_time(make, window, batch, steps):
    """Seconds per train step and the number of slow_conv3d calls in one step."""
    torch.manual_seed(0)
    net = make()
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.randn(batch, 1, *window)

    def step():
        out = net(x)
        loss = out.float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    slow = sum(e.count for e in prof.key_averages() if "slow_conv" in e.key)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    params = sum(p.numel() for p in net.parameters())
    return (time.perf_counter() - t0) / steps, slow, params


def main() -> None:
    """Print a table of step times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--window", default="8,128,128")
    parser.add_argument("--voxel", default="40,40,40", help="z,y,x spacing the network sees")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batches", default="1,2")
    args = parser.parse_args()
    window = tuple(int(v) for v in args.window.split(","))
    voxel = tuple(float(v) for v in args.voxel.split(","))
    print(f"threads {torch.get_num_threads()}, window {window}, voxel {voxel}")
    print(f"{'model':28s} {'batch':>5s} {'params':>8s} {'s/step':>7s} {'slow convs':>10s}")
    for name, make in _models(window, voxel, args.width):
        win = (max(16, window[0]), *window[1:]) if "BasicUNet" in name else window
        for batch in (int(b) for b in args.batches.split(",")):
            sec, slow, params = step_time(make, win, batch, args.steps)
            print(f"{name:28s} {batch:5d} {params / 1e6:7.2f}M {sec:7.2f} {slow:10d}  {win}")


if __name__ == "__main__":
    main()
