"""Tiled prediction: napari-anatomics `predict` vs MONAI `sliding_window_inference`.

Same model (a small 3D CNN, softmax), same volume, window and overlap (25 %),
Gaussian blending on both sides, one torch thread each, results written to a
uint8 zarr on both sides. Each run happens in a fresh subprocess so its peak
RSS (VmHWM) is clean. The volume is read from a zarr on disk: ours
streams it region by region, MONAI needs the whole stack (and its float32
output) in memory. A second volume 4x larger shows how peak memory scales.

Run: ``python benchmarks/predict_vs_monai.py [--scale 1.0]`` (wall-clock times
on a shared machine are noisy; the RSS figures are not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
from _rss import peak_rss_mb  # benchmarks/ is on sys.path when run as a script

WINDOW = (16, 64, 64)
OVERLAP = 0.25
BATCH = 4
MEMORY_MB = 48.0


def make_model():
    import torch

    from napari_anatomics.models.config import ModelConfig
    from napari_anatomics.models.store import TrainedModel

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(8, 2, 1),
    ).eval()
    config = ModelConfig(
        task="semantic",
        classes=["organelle"],
        window=WINDOW,
        voxel_size=(40, 10, 10),
        architecture={"name": "bench", "spatial_dims": 3},
        targets=["background", "organelle"],
        normalization={"mean": 128.0, "std": 50.0},
    )
    return TrainedModel(net, config, torch.device("cpu"))


def child(tool: str, image_path: str, out: str) -> dict:
    """One measured run (in its own process)."""
    import torch
    import zarr

    from napari_anatomics.io.read import open_volume
    from napari_anatomics.models.config import normalize

    torch.set_num_threads(1)
    model = make_model()
    tiles = []
    model.net.register_forward_pre_hook(lambda _, args: tiles.append(args[0].shape[0]))
    volume = open_volume(image_path)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    if tool == "anatomics":
        from napari_anatomics.core.progress import run_job
        from napari_anatomics.predict.config import PredictConfig
        from napari_anatomics.predict.tiled import predict
        from napari_anatomics.predict.tiling import default_stride

        stride = default_stride(WINDOW, OVERLAP)
        settings = PredictConfig(stride=stride, batch=BATCH, threads=1, memory_mb=MEMORY_MB)
        run_job(predict(model, volume, out, settings))
    else:
        from monai.inferers import sliding_window_inference

        image = normalize(volume.data.compute(), model.config.normalization)
        with torch.no_grad():
            prob = sliding_window_inference(
                torch.from_numpy(image)[None, None],
                WINDOW,
                BATCH,
                model,
                overlap=OVERLAP,
                mode="gaussian",
                padding_mode="reflect",
            )[0].numpy()
        from napari_anatomics.io.probabilities import encode

        quantized = encode(prob.astype(np.float32), "uint8")
        zarr.open_group(out, mode="w").create_array(
            "probabilities", data=quantized, chunks=(2, 32, 256, 256)
        )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "tiles": sum(tiles),
        "voxels": int(np.prod(volume.shape)),
        "rss_mb": peak_rss_mb(),
        "baseline_mb": baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="scale of the 1x volume in y")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    import zarr

    shape_1x = (32, int(320 * args.scale), 384)
    shapes = {"1x": shape_1x, "4x": (64, 2 * shape_1x[1], shape_1x[2])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for name, shape in shapes.items():
            path = f"{tmp}/{name}.zarr"
            array = zarr.create_array(path, shape=shape, chunks=(16, 256, 256), dtype="uint8")
            for z in range(0, shape[0], 16):
                array[z : z + 16] = rng.integers(0, 256, (min(16, shape[0] - z), *shape[1:]))
            for tool in ("anatomics", "monai"):
                out = f"{tmp}/{name}-{tool}.zarr"
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", tool, path, out],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append((name, shape, tool, result))
            inner = (1, slice(4, -4), slice(16, -16), slice(16, -16))
            ours = zarr.open_group(f"{tmp}/{name}-anatomics.zarr")["probabilities"][inner]
            theirs = zarr.open_group(f"{tmp}/{name}-monai.zarr")["probabilities"][inner]
            diff = np.abs(ours.astype(int) - theirs.astype(int))
            print(
                f"{name}: |ours - MONAI| away from the edges: mean {diff.mean():.2f}/255, "
                f"max {diff.max()}/255 (blend weights differ)"
            )

    print(
        f"\nwindow {WINDOW}, overlap {OVERLAP}, batch {BATCH}, 1 torch thread, "
        f"region budget {MEMORY_MB:g} MB"
    )
    print(
        f"{'volume':<6} {'shape (z,y,x)':<16} {'tool':<10} {'time s':>8} "
        f"{'Mvoxels/s':>10} {'tiles run':>10} {'peak RSS MB':>12} {'of which run':>13}"
    )
    rss = {}
    for name, shape, tool, r in rows:
        rss[(name, tool)] = r["rss_mb"]
        print(
            f"{name:<6} {shape!s:<16} {tool:<10} {r['seconds']:>8.1f} "
            f"{r['voxels'] / r['seconds'] / 1e6:>10.3f} {r['tiles']:>10} {r['rss_mb']:>12.0f} "
            f"{r['rss_mb'] - r['baseline_mb']:>13.0f}"
        )
    print("('of which run' = peak RSS minus the RSS after imports, model and opening the stack)")
    for tool in ("anatomics", "monai"):
        print(f"peak RSS 4x / 1x, {tool}: {rss[('4x', tool)] / rss[('1x', tool)]:.2f}")


if __name__ == "__main__":
    main()
