"""Train an instance model on one region of the real SBFSEM chloroplasts; score another.

The stack (10 x 1170 x 3293, 10 x 10 x 40 nm) is split along y (default):
the model trains on y < ``--split`` and is evaluated on y >= ``--split + --gap``,
a region it never saw. Both strips hold both tissues of the stack: large
vacuolated cells with chloroplasts along the walls, and (x > ~2600) a patch of
small dense cells with small, pale chloroplasts. An x split (``--axis x
--split 2200 --gap 100``) leaves the dense cells out of training altogether:
that measures transfer to unseen tissue, not this task.

Prediction is tiled (:func:`napari_anatomics.inference.predict`, batch 2,
4-flip TTA), decoding is the seeded watershed of
:func:`napari_anatomics.postprocess.postprocess`, and the scores come from
:func:`napari_anatomics.evaluate.evaluate`, with connected objects of the
painted labels as the true instances (the test strip holds 29, one of them a
1-voxel painting slip that no model can find; perfect maps through this
decoding score AP@0.5 0.97 there). ``--tune`` (on by default) picks the
decoding settings (seed and boundary thresholds, seed erosion) on the first
350 rows of the TRAINING strip, then scores the test strip once.

Prints foreground Dice, instance AP@0.5 (TP / (TP + FP + FN) at IoU 0.5),
steps done and time next to the reference numbers of the issue (a quick
0.6M-parameter anisotropic U-Net: Dice 0.87, AP@0.5 0.43 in 15 min, ~800 steps).

    python benchmarks/train_chloroplasts.py --time-limit 15

The defaults are the best run's settings: a 2D U-Net (smp, ResNet-18 encoder,
random init, 5 levels) per slice at 2x in-plane downsampling (20 nm), window
256 x 256, batch 4, lr 2e-3, zoom augmentation 0.5, 80 % of the crops centred
on painted objects (drawn object by object). ``--arch resunet3d --downsample
1,4,4 --window 8,128,128 --batch 2 --width 8 --depth 4 --lr 3e-3 --scale 0``
is the 3D U-Net of the first rounds.

Results on 2 shared cores, 2026-11-29 (two runs at a time with ``--threads 1``
each unless noted; wall-clock is noisy, steps are the better measure; "2D, 4x"
runs used 4 levels, window 160 x 160 and batch 8; 50 % object crops unless
noted, drawn object by object except in the runs marked "by area"):

=========================================  =====  =======  ======  ========
run (15 min of training each)              steps  fg Dice  AP@0.5  TP/FP/FN
=========================================  =====  =======  ======  ========
reference (issue 3)                        ~800   0.870    0.430
**2D, 2x, zoom 0.5, 80 % object crops**    831    0.880    0.310   13/13/16
  large cells (x < 2700)                          0.915    0.367   11/7/12
  dense cells (x >= 2700)                         0.583    0.214   3/6/5
  same settings, seed 1 (busier cores)     499    0.849    0.361   13/7/16
  same, boundary width 2 (busier cores)    496    0.837    0.286   10/6/19
2D, 2x, zoom 0.5 (2 threads)               973    0.860    0.308   12/10/17
  same model, seed erosion tuned too              0.852    0.343   12/6/17
2D, 2x, zoom 0.5, seed 1                   835    0.860    0.275   11/11/18
2D, 2x, zoom 0.5                           587    0.859    0.314   11/6/18
2D, 4x, zoom 0.5                           808    0.840    0.361   13/7/16
2D, 4x, zoom 1.0                           946    0.828    0.282   11/10/18
2D, 4x, object-balanced crops              809    0.797    0.205   9/15/20
2D, 4x, by area                            695    0.786    0.214   9/13/20
3D w8 d4, 4x, by area                      1043   0.793    0.250   12/19/17
3D w8 d4, 4x, zoom 0.5                     1369   0.777    0.167   7/13/22
3D w8 d4, 4x, InstanceNorm, by area        1249   0.771    0.231   9/10/20
3D w8 d5, 4x, by area                      1010   0.763    0.159   7/15/22
3D w8 d4, 4x, elastic 4 px                 1167   0.745    0.175   7/11/22
3D w8 d4, 4x, boundary width 2, by area    1076   0.759    0.200   9/16/20
3D w8 d4, 2x, boundary width 2, by area    965    0.722    0.233   10/14/19
3D w8 d4, 2x, by area                      894    0.688    0.205   9/15/20
=========================================  =====  =======  ======  ========

What mattered: zoom augmentation (the 2D net went from 0.79 to 0.84 Dice: the
small chloroplasts of the dense cells look like shrunken large ones), then 2x
instead of 4x in-plane downsampling for the 2D net (texture of the small
chloroplasts; its deep encoder keeps the context the 3D net lost at 2x), then
more crops centred on objects (the dense-cell patch, Dice 0.37 -> 0.58). The
small 3D U-Net fits the training strip far less well (loss ~0.3 against ~0.1
for the 2D net) and gained nothing from zoom, elastic, InstanceNorm or depth 5;
with only 10 slices, all alike, z context buys little here. Seed erosion
(``postprocess(seed_erosion=...)``) splits chloroplasts the boundary map
joins; tuning picks 8 px, worth 0-0.04 AP on the test strip. Averaging the
maps of the two 1-thread runs (seed 0 with 80 % object crops, seed 1): Dice
0.866, AP 0.34-0.37.

Below the AP target (0.50) in every run; the Dice target (0.88) is met by the
best run only. AP@0.5 is decided by few objects (one matched object is worth
~0.03): the remaining errors are the small pale chloroplasts of the dense
cells (5-8 of the 29 test objects missed), and pairs of chloroplasts touching
along a cell wall that are merged (3 pairs) because the boundary between them
is faint at 20 nm.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cc3d
import numpy as np

from napari_anatomics.evaluate import evaluate
from napari_anatomics.inference import predict
from napari_anatomics.io import open_volume
from napari_anatomics.model_store import load_model
from napari_anatomics.postprocess import postprocess
from napari_anatomics.progress import run_job
from napari_anatomics.training import TrainConfig, train
from napari_anatomics.volume import Volume

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sbfsem-chloroplasts"
REFERENCE = {"Dice": 0.87, "AP@0.5": 0.43, "steps": "~800", "minutes": 15.0}


def _objects(labels: np.ndarray) -> np.ndarray:
    """Connected objects (6-connected, per value) as the instances."""
    return cc3d.connected_components(labels, connectivity=6).astype(np.uint32)


def _decode(probs, out: Path, levels: dict):
    """Seeded watershed (:func:`postprocess`) with these instance settings."""
    return run_job(postprocess(probs, out, task="instance", overwrite=True, **levels))


def _predict(model, image: Volume, out: Path, args):
    """Tiled prediction (batch 2, ``--tta`` flips) of one strip into ``out``."""
    job = predict(model, image, out, batch=2, tta=args.tta, threads=args.threads, overwrite=True)
    return run_job(job)


def _tune(model, image: Volume, truth: np.ndarray, work: Path, levels: dict, args) -> dict:
    """Best seed thinning (erosion, depth, min seed size) by AP@0.5, then Dice, on
    the training region; the other settings stay as given."""
    probs = _predict(model, image, work / "train_pred.zarr", args)

    def score(trial):
        ev = evaluate(np.asarray(_decode(probs, work / "train_pred.zarr", trial)), truth)
        ap = ev.instances["0.5"]
        shown = {k: trial[k] for k in ("seed_erosion", "seed_depth", "min_seed_size")}
        print(f"  tune {shown}: AP {ap.ap:.3f} Dice {ev.foreground_dice:.3f}", flush=True)
        return ap.ap, ev.foreground_dice

    grid = [
        {**levels, "seed_erosion": e, "seed_depth": d, "min_seed_size": m}
        for e in (0, 8, 16)
        for d in (0.0, 0.5)
        for m in (0, 200)
    ]
    best = max(grid, key=score)
    print(f"  tuned on the training strip: {best}", flush=True)
    return best


def _model_name(config) -> str:
    """Short description of a trained model from its config."""
    arch, ds = config.architecture, ",".join(str(f) for f in config.downsample)
    if arch["name"] == "unet2d":
        return f"U-Net 2D {arch.get('encoder', 'resnet18')} d{arch['depth']} ds{ds}"
    return f"ResUNet3D w{arch['width']} d{arch['depth']} ds{ds}"


def main() -> None:
    """Train, predict, decode, score; print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--time-limit", type=float, default=15.0, help="training minutes")
    p.add_argument("--iterations", type=int, default=100_000)
    p.add_argument("--axis", choices=("y", "x"), default="y", help="axis of the split")
    p.add_argument("--split", type=int, default=700, help="where the training region ends")
    p.add_argument("--gap", type=int, default=80, help="unused strip between the regions")
    p.add_argument("--downsample", default="1,2,2")
    p.add_argument("--window", default="1,256,256")
    p.add_argument("--arch", default="unet2d", help="resunet3d or unet2d")
    p.add_argument("--encoder", default="resnet18", help="2D encoder (unet2d)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--norm", default="batch")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--distance", action="store_true", help="BCD targets")
    p.add_argument("--boundary-width", type=int, default=1)
    p.add_argument("--contact-weight", type=float, default=1.0, help="loss weight at contacts")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    p.add_argument("--tta", type=int, default=4, help="0, 4 or 8 flips")
    p.add_argument("--seed-threshold", type=float, default=0.8)
    p.add_argument("--boundary-threshold", type=float, default=0.3)
    p.add_argument("--seed-erosion", type=int, default=0, help="voxels, full res")
    p.add_argument("--seed-depth", type=float, default=0.0, help="fraction of local depth")
    p.add_argument("--seed-depth-radius", type=int, default=60, help="voxels, full res")
    p.add_argument("--min-seed-size", type=int, default=0, help="voxels, full res")
    p.add_argument("--min-size", type=int, default=2000, help="voxels, full res")
    p.add_argument("--fg-fraction", type=float, default=0.8, help="crops centred on objects")
    p.add_argument("--scale", type=float, default=0.5, help="zoom augmentation (0.5 = x0.67-1.5)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the training run")
    p.add_argument("--elastic", type=float, default=0.0, help="elastic strength (voxels)")
    p.add_argument("--by-area", action="store_true", help="centre crops by area, not by object")
    p.add_argument(
        "--tune",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pick the decoding settings on the TRAINING region (never the test one)",
    )
    p.add_argument(
        "--tune-extent", type=int, default=None, help="rows (or columns) of it, from 0 (all)"
    )
    p.add_argument("--out", type=Path, default=None, help="keep the model and maps here")
    p.add_argument("--model", type=Path, default=None, help="skip training, score this model")
    args = p.parse_args()
    if not (args.data / "images.tif").is_file():
        raise SystemExit(f"real data not found in {args.data}")

    image = open_volume(args.data / "images.tif", voxel_size="10,10,40")
    labels = open_volume(args.data / "labels.tif", voxel_size="10,10,40")
    axis = {"y": 1, "x": 2}[args.axis]
    train_x = (slice(None),) * axis + (slice(0, args.split),)
    test_x = (slice(None),) * axis + (slice(args.split + args.gap, image.shape[axis]),)
    train_image = Volume(image.data[train_x], image.voxel_size, "user", name="train")
    # Painted ids as they are: touching objects carry different ids, which is all the
    # boundary targets need (reused ids of far-apart objects do no harm).
    train_labels = Volume(labels.data[train_x], image.voxel_size, "user", name="labels")
    work = Path(args.out or tempfile.mkdtemp(prefix="anatomics-bench-"))
    triple = [tuple(int(v) for v in s.split(",")) for s in (args.downsample, args.window)]
    cfg = TrainConfig(
        task="instance",
        window=triple[1],
        downsample=triple[0],
        iterations=args.iterations,
        batch=args.batch,
        lr=args.lr,
        architecture=args.arch,
        encoder=args.encoder,
        width=args.width,
        depth=args.depth,
        norm=args.norm,
        distance=args.distance,
        boundary_width=args.boundary_width,
        contact_weight=args.contact_weight,
        fg_fraction=args.fg_fraction,
        balance_objects=not args.by_area,
        elastic=args.elastic,
        scale=args.scale,
        seed=args.seed,
        save_every=500,
        time_limit_s=args.time_limit * 60,
        num_threads=args.threads,
    )
    t0 = time.perf_counter()
    model_dir = args.model
    last = {}
    if model_dir is None:

        def show(event) -> None:
            last.update(event.metrics)
            if event.step and event.step % 50 == 0:
                print(
                    f"  it {event.step}  loss {event.metrics['loss']:.3f}  "
                    f"{event.metrics['it_s']:.2f} it/s",
                    flush=True,
                )

        model_dir = run_job(train(train_image, train_labels, cfg, work / "model"), show)
    train_s = time.perf_counter() - t0
    model = load_model(model_dir, device="cpu")
    levels = {
        "seed_threshold": args.seed_threshold,
        "boundary_threshold": args.boundary_threshold,
        "seed_erosion": args.seed_erosion,
        "seed_depth": args.seed_depth,
        "seed_depth_radius": args.seed_depth_radius,
        "min_seed_size": args.min_seed_size,
        "min_size": args.min_size,
    }
    if args.tune:
        tune_x = (slice(None),) * axis + (
            slice(0, min(args.tune_extent or args.split, args.split)),
        )
        tune_image = Volume(image.data[tune_x], image.voxel_size, "user", name="tune")
        # Painting slips (a few voxels) are no objects a model could find.
        tune_truth = cc3d.dust(_objects(np.asarray(labels.data[tune_x])), threshold=100)
        levels = _tune(model, tune_image, tune_truth, work, levels, args)
    test_image = Volume(image.data[test_x], image.voxel_size, "user", name="test")
    t1 = time.perf_counter()
    probs = _predict(model, test_image, work / "pred.zarr", args)
    result = _decode(probs, work / "pred.zarr", levels)
    predict_s = time.perf_counter() - t1
    truth = _objects(np.asarray(labels.data[test_x]))
    ev = evaluate(np.asarray(result), truth, image.voxel_size)
    ap = ev.instances["0.5"] if "0.5" in ev.instances else next(iter(ev.instances.values()))
    rows = [
        (
            "reference (issue 3)",
            REFERENCE["steps"],
            f"{REFERENCE['minutes']:.1f}",
            f"{REFERENCE['Dice']:.3f}",
            f"{REFERENCE['AP@0.5']:.3f}",
            "",
            "",
        ),
        (
            _model_name(model.config),
            str(model.config.iterations),
            f"{train_s / 60:.1f}",
            f"{ev.foreground_dice:.3f}",
            f"{ap.ap:.3f}",
            f"{ap.tp}/{ap.fp}/{ap.fn}",
            f"{predict_s:.0f}",
        ),
    ]
    head = ("model", "steps", "train min", "fg Dice", "AP@0.5", "TP/FP/FN", "predict s")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(f"test objects: {ev.n_gt} true, {ev.n_pred} predicted; model in {model_dir}")
    print(f"decoding: {levels}")


if __name__ == "__main__":
    main()
