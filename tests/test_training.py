"""Training: learning, sparse masks, resume, cancel, fine-tuning, clear errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_anatomics.core.progress import CancelToken, run_job
from napari_anatomics.core.volume import Volume
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.models.config import normalize
from napari_anatomics.models.store import CHECKPOINT_NAME, load_checkpoint, load_model
from napari_anatomics.train.loop import TrainConfig, train
from precision_paths import requires_mixed_precision

#: These tests are about learning, masks, resume and errors, not the precision
#: path: float32 everywhere (mixed precision has its own test below).
TINY = TrainConfig(
    task="instance",
    window=(4, 32, 32),
    iterations=12,
    batch=2,
    width=4,
    depth=3,
    warmup=3,
    lr=5e-3,
    save_every=100,
    seed=3,
    threads=1,
    precision="float32",
    architecture="resunet3d",
    tune_decoding=False,
)


@pytest.fixture(scope="module")
def synthetic():
    syn = synthetic_sbfsem((8, 64, 64), 10, voxel_size=(40.0, 10.0, 10.0), seed=1)
    return syn.volumes()


def losses_of(job):
    events = []
    run_job(job, events.append)
    return [e.metrics["loss"] for e in events if "loss" in e.metrics]


def test_loss_falls(synthetic, tmp_path):
    losses = losses_of(train(*synthetic, replace(TINY, iterations=40), tmp_path / "m"))
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:5])
    model = load_model(tmp_path / "m", device="cpu")
    assert model.config.iterations == 40
    assert model.config.window == (4, 32, 32)
    assert model.config.training["seed"] == 3
    rows = (tmp_path / "m" / "history.csv").read_text().splitlines()
    assert len(rows) == 41


def test_semantic_task_and_progress_metrics(tmp_path):
    syn = synthetic_sbfsem((8, 64, 64), 10, n_classes=2, seed=2)
    image, _ = syn.volumes()
    labels = Volume(syn.semantic, syn.voxel_size, "user")
    cfg = replace(TINY, task="semantic", iterations=4, val_fraction=0.3, val_every=2)
    events = []
    run_job(train(image, labels, cfg, tmp_path / "s"), events.append)
    last = events[-1].metrics
    assert {"iteration", "loss", "lr", "it_s", "eta_s", "val_dice"} <= set(last)
    assert 0.0 <= last["val_dice"] <= 1.0
    config = load_model(tmp_path / "s", device="cpu").config
    assert config.targets == ["background", "class_1", "class_2"]
    assert config.label_values == [1, 2]


@pytest.mark.parametrize(
    "precision", [pytest.param("mixed", marks=requires_mixed_precision()), "float32"]
)
def test_2d_model_trains_on_slices(synthetic, tmp_path, precision):
    cfg = replace(TINY, architecture="unet2d", window=(1, 32, 32), iterations=3)
    losses = losses_of(train(*synthetic, replace(cfg, precision=precision), tmp_path / "flat"))
    assert len(losses) == 3 and np.isfinite(losses).all()
    model = load_model(tmp_path / "flat", device="cpu")
    assert model.config.training["precision"] == precision
    assert model.config.spatial_dims == 2 and model.config.window == (1, 32, 32)
    probs = model(torch.zeros(2, 1, 3, 32, 32))
    assert probs.shape == (2, 2, 3, 32, 32)


def weights(folder):
    return load_model(folder, device="cpu").net.state_dict()


def test_resume_equals_uninterrupted_run(synthetic, tmp_path):
    # On the CPU with one thread the kernels are deterministic; CUDA's may not be
    # (atomic adds in convolution gradients), so bit equality is only promised here.
    tiny = replace(TINY, device="cpu")
    run_job(train(*synthetic, tiny, tmp_path / "full"))
    job = train(*synthetic, tiny, tmp_path / "parts")
    for event in job:
        if event.step == 5:
            break
    job.close()  # interrupted: the checkpoint is written on close
    assert load_checkpoint(tmp_path / "parts" / CHECKPOINT_NAME)["iteration"] == 5
    with pytest.raises(FileExistsError, match="resume"):
        run_job(train(*synthetic, tiny, tmp_path / "parts"))
    run_job(train(*synthetic, replace(tiny, resume=True), tmp_path / "parts"))
    full, parts = weights(tmp_path / "full"), weights(tmp_path / "parts")
    assert full.keys() == parts.keys()
    # Exact by design: the same process, device, thread count (1), shapes and batches,
    # with the RNG states restored from the checkpoint, runs the same float32 operations.
    for key in full:
        torch.testing.assert_close(parts[key], full[key], rtol=0, atol=0, msg=key)
    history = (tmp_path / "parts" / "history.csv").read_text().splitlines()
    assert len(history) == TINY.iterations + 1


def test_cancel_leaves_loadable_model(synthetic, tmp_path):
    token = CancelToken()
    job = train(*synthetic, replace(TINY, iterations=1000), tmp_path / "c", cancel=token)
    for event in job:
        if event.step == 3:
            token.cancel()
    assert load_model(tmp_path / "c", device="cpu").config.iterations == 3
    assert load_checkpoint(tmp_path / "c" / CHECKPOINT_NAME)["iteration"] == 3


def test_time_limit_stops_and_fine_tune(synthetic, tmp_path):
    first = run_job(train(*synthetic, replace(TINY, iterations=3), tmp_path / "a"))
    cfg = replace(TINY, iterations=10_000, time_limit=1.0 / 60, init_from=str(first))
    out = run_job(train(*synthetic, cfg, tmp_path / "b"))
    model = load_model(out, device="cpu")
    # No count of iterations per second: the clock starts after the setup, so a slow
    # machine still does one, and none does 10,000 tiny steps in a second.
    assert 0 < model.config.iterations < 10_000
    assert model.config.training["init_from"] == str(first)
    bad = replace(TINY, width=8, init_from=str(first))
    with pytest.raises(ValueError, match="cannot fine-tune"):
        run_job(train(*synthetic, bad, tmp_path / "c"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window": (4, 128, 32)}, "larger than the volume"),
        ({"window": (4, 30, 32)}, "multiple of its down-sampling"),
        ({"downsample": (1, 4, 4), "window": (4, 32, 32)}, "larger than the volume"),
        ({"architecture": "unet2d", "window": (4, 32, 32)}, "z = 1"),
        ({"iterations": 0}, "iterations must be at least 1"),
        ({"precision": "half"}, "precision must be one of auto, mixed, float32"),
        ({"contact_weight": 0.0}, r"contact_weight must be in \[0.001, 1000\]"),
        ({"zoom": -1.0}, r"zoom must be in \[0, 2\]"),
    ],
)
def test_bad_settings_fail_before_training(synthetic, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        next(train(*synthetic, replace(TINY, **change), tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_bad_data_fails_before_training(synthetic, tmp_path):
    image, labels = synthetic
    with pytest.raises(ValueError, match=r"shape .* but labels"):
        next(train(image, Volume(labels.data[:, :32]), TINY, tmp_path / "x"))
    empty = Volume(np.zeros(labels.shape, np.uint16))
    with pytest.raises(ValueError, match="annotation"):
        next(train(image, empty, TINY, tmp_path / "x"))
    binary = Volume((labels.data > 0).astype(np.uint8))
    with pytest.raises(ValueError, match="look semantic"):
        next(train(image, binary, TINY, tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def fg_dice_on(model, image, truth, slices):
    x = torch.from_numpy(normalize(image, model.config.normalization))[None, None]
    fg = model(x)[0, 0].numpy() > 0.5
    p, t = fg[slices], truth[slices] > 0
    return 2 * (p & t).sum() / (p.sum() + t.sum())


def test_sparse_annotation_learns_objects_on_unpainted_slices(tmp_path):
    syn = synthetic_sbfsem((12, 64, 64), 14, voxel_size=(40.0, 10.0, 10.0), seed=5)
    painted = [2, 6, 10]
    sparse = np.zeros_like(syn.labels)
    sparse[painted] = syn.labels[painted]
    unpainted = [z for z in range(12) if z not in painted]
    assert (syn.labels[unpainted] > 0).sum() > 2000  # objects the mask must not teach as bg
    image = Volume(syn.image, syn.voxel_size, "user")
    # No copy-paste: pasting painted objects into unpainted slices would teach them as
    # objects with or without the mask; this test is about the mask alone.
    cfg = replace(TINY, iterations=60, lr=1e-2, object_crops=0.7, copy_paste=0.0)
    run_job(train(image, Volume(sparse, syn.voxel_size), cfg, tmp_path / "masked"))
    off = replace(cfg, use_mask=False)
    run_job(train(image, Volume(sparse, syn.voxel_size), off, tmp_path / "unmasked"))
    masked = load_model(tmp_path / "masked", device="cpu")
    unmasked = load_model(tmp_path / "unmasked", device="cpu")
    dice_masked = fg_dice_on(masked, syn.image, syn.labels, unpainted)
    dice_unmasked = fg_dice_on(unmasked, syn.image, syn.labels, unpainted)
    assert dice_masked > 0.7, (dice_masked, dice_unmasked)
    assert dice_masked > dice_unmasked + 0.3, (dice_masked, dice_unmasked)
