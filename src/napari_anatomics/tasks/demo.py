"""The one-command demo: the whole loop on the bundled sample.

:func:`run_demo` trains a small instance model on the top part of the
bundled SBFSEM chloroplast sample, auto-labels the part it never saw
(:func:`~napari_anatomics.tasks.autolabel.autolabel`: predict and
post-process), evaluates against the painted labels (connected objects as
instances), measures every chloroplast and writes meshes. ``anatomics demo``
runs it with a progress bar and prints :func:`format_summary`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cc3d
import dask.array as da
import numpy as np
import pandas as pd

from ..analyze.evaluate import Evaluation, evaluate
from ..analyze.measure import measure, summarize, write_csv
from ..analyze.meshes import export_meshes
from ..core.progress import Job, stage
from ..core.volume import Volume, format_voxel_size
from ..io.samples import SAMPLE_CREDIT, load_sample
from ..models.store import HISTORY_NAME, load_model
from ..predict.config import PredictConfig
from ..segment.config import PRESETS, SegmentConfig
from ..train.loop import train
from ..train.recipe import TrainConfig
from .autolabel import autolabel

#: The decoding of a model that chose none (trained without tuning).
UNTUNED = replace(PRESETS["split touching objects"], min_size=50)


@dataclass
class DemoResult:
    """What the demo produced and measured."""

    out_dir: Path
    model_dir: Path
    prediction: Path
    stats_csv: Path
    meshes: list[Path]
    evaluation: Evaluation
    totals: pd.DataFrame
    train_steps: int
    final_loss: float
    test_shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    tta: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    out_dir: str | Path = "anatomics-demo",
    *,
    time_limit: float | None = 5.0,
    train_fraction: float = 0.6,
    tta: int | None = None,
    **settings: Any,
) -> Job[DemoResult]:
    """Run the demo loop; a job generator returning a :class:`DemoResult`.

    The model is trained with the recipe's defaults
    (:data:`napari_anatomics.train.recipe.SETTINGS`), as a user's first run would
    be, and the prediction is decoded as the model chose on its painted data.

    Parameters
    ----------
    out_dir : str or Path
        Output folder; replaced if it holds an earlier demo.
    time_limit : float, optional
        Training minutes.
    train_fraction : float
        Share of the sample's y extent used for training (the top strip); the
        rest is auto-labelled and evaluated.
    tta : {0, 4, 8}, optional
        Test-time augmentation of the prediction (default: the model's choice).
    **settings
        Other :class:`~napari_anatomics.train.recipe.TrainConfig` settings
        (iterations, architecture, seed, device...).

    Yields
    ------
    Progress
        Events of each phase, their messages prefixed with the phase name.
    """
    if not 0.2 <= train_fraction <= 0.8:
        raise ValueError("train_fraction must be between 0.2 and 0.8")
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not (out_dir / "demo-summary.txt").exists() and any(out_dir.iterdir()):
            raise FileExistsError(
                f"{out_dir} exists and is not an earlier demo: choose another --out folder"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    image, painted = load_sample()
    vs = image.voxel_size
    # The painted labels reuse values: face-connected objects are the instances.
    instances = cc3d.connected_components(np.asarray(painted.data), connectivity=6)
    # Split along y: both tissues of the sample (large vacuolated cells, and a patch of
    # small dense cells on the right) are then in the training and in the test strip.
    split = int(image.shape[1] * train_fraction)
    train_image = Volume(image.data[:, :split], vs, "file", image.source, "train image")
    train_labels = Volume(
        da.from_array(instances[:, :split]), vs, "file", painted.source, "train labels"
    )
    test_image = Volume(image.data[:, split:], vs, "file", image.source, "test image")
    truth = cc3d.connected_components(instances[:, split:], connectivity=6)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    config = TrainConfig(
        **({"task": "instance", "time_limit": time_limit, "save_every": 100} | settings)
    )
    model_dir = yield from stage(
        "train", train(train_image, train_labels, config, out_dir / "model")
    )
    history = pd.read_csv(model_dir / HISTORY_NAME)
    steps = int(history["iteration"].iloc[-1]) if len(history) else 0
    # The loss of one batch is noisy: report the mean of the last 20 iterations.
    loss = float(history["loss"].tail(20).mean()) if len(history) else float("nan")
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = load_model(model_dir, device=config.device)
    tta = int(model.config.decoding.get("tta", 0)) if tta is None else tta
    decoding = SegmentConfig.tuned(model.config.decoding, fallback=UNTUNED)
    prediction = out_dir / "prediction.zarr"
    done = yield from autolabel(
        test_image, model, prediction, predict=PredictConfig(tta=tta), segment=decoding
    )
    labels_np = np.asarray(done.labels[...])
    seconds["predict"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    evaluation = evaluate(labels_np, truth, vs)
    table = measure(labels_np, vs, image=np.asarray(test_image.data))
    totals = summarize(table, labels_np.shape, vs)
    stats_csv = write_csv(table, out_dir / "chloroplasts.csv", vs, source=str(prediction))
    meshes = yield from stage(
        "meshes", export_meshes(labels_np, out_dir / "meshes", vs, combined=True, smooth=5)
    )
    seconds["quantify"] = time.perf_counter() - t0

    result = DemoResult(
        out_dir=out_dir,
        model_dir=model_dir,
        prediction=prediction,
        stats_csv=stats_csv,
        meshes=meshes,
        evaluation=evaluation,
        totals=totals,
        train_steps=steps,
        final_loss=loss,
        test_shape=tuple(labels_np.shape),  # type: ignore[arg-type]
        voxel_size=vs,
        tta=tta,
        seconds=seconds,
    )
    (out_dir / "demo-summary.txt").write_text(format_summary(result) + "\n")
    return result


def format_summary(result: DemoResult) -> str:
    """The demo's closing table, as printed by ``anatomics demo``."""
    ev = result.evaluation
    at50 = ev.instances["0.5"]
    total = result.totals.loc["all"]
    z, y, x = result.test_shape
    rows = [
        ("data", f"bundled SBFSEM sample, voxel {format_voxel_size(result.voxel_size)}"),
        (
            "training",
            f"{result.train_steps} iterations in {result.seconds['train']:.0f} s, "
            f"loss {result.final_loss:.3f} (mean of the last 20)",
        ),
        (
            "auto-labelled",
            f"{z} x {y} x {x} voxels (z, y, x) the model never saw, "
            f"{result.seconds['predict']:.0f} s"
            + (f" with {result.tta}x test-time augmentation" if result.tta else ""),
        ),
        ("foreground Dice", f"{ev.foreground_dice:.3f}"),
        (
            "objects @ IoU 0.5",
            f"{at50.tp} matched, {at50.fp} false, {at50.fn} missed "
            f"(F1 {at50.f1:.2f}, AP {at50.ap:.2f})",
        ),
        ("chloroplasts", f"{ev.n_pred} found / {ev.n_gt} painted"),
        (
            "mean volume",
            f"{total['mean_volume_um3']:.2f} µm³ (median "
            f"{total['median_volume_um3']:.2f}, sum {total['sum_volume_um3']:.1f})",
        ),
        (
            "volume fraction",
            f"{100 * total['volume_fraction']:.1f} % of the stack "
            f"(painted: {100 * ev.gt_voxels / (z * y * x):.1f} %)",
        ),
        (
            "outputs",
            f"{result.out_dir}/: model/, prediction.zarr, {result.stats_csv.name}, "
            f"meshes/ (one .ply, {ev.n_pred} objects with a per-vertex id)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append(f"Data: {SAMPLE_CREDIT}")
    return "\n".join(lines)
