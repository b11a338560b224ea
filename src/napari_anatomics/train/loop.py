"""Training: learn semantic or instance segmentation from a few painted slices.

:func:`train` is a job generator (see :mod:`~napari_anatomics.core.progress`): it
decides the settings left to the data (:mod:`~napari_anatomics.train.auto`),
checks data and settings (clear errors before any training), yields one
:class:`Progress` per iteration (loss, learning rate, it/s, ETA, validation
Dice), then chooses the model's decoding on the painted data
(:mod:`~napari_anatomics.train.decoding`) and returns the model folder.

* Only painted slices count (see :mod:`~napari_anatomics.train.targets`).
* AdamW with linear warmup and cosine decay; with a time limit the cosine
  follows whichever of iterations or time runs out first.
* CUDA or the CPU (every usable core). Mixed precision (float16 on CUDA,
  bfloat16 on CPUs with the hardware) only after it passes a check against
  float32 on the first real batch; a step whose loss or gradient is not
  finite is skipped (:mod:`~napari_anatomics.core.numerics`), and a mixed run
  that keeps producing them switches to float32, saying so in the progress
  events, ``history.csv`` and ``config.json``. Non-finite steps in float32
  stop the run with a clear message; non-finite weights are never saved.
* Checkpoints (``checkpoint.pt``) every ``save_every`` iterations, at the end,
  on cancel and when the generator is closed, written atomically. ``resume``
  restores weights, optimizer, scaler, precision, iteration, elapsed time and
  the torch/numpy/python random states, so a resumed seeded run equals an
  uninterrupted one. ``init_from`` fine-tunes an earlier model
  (:mod:`~napari_anatomics.train.start`).
* With a :class:`~napari_anatomics.train.live.LiveSession`, slices painted
  while the run goes on join it between steps (a note says which, and
  ``config.json`` records them under ``slices_joined``), and copies of the
  weights are published for the front end's preview.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..core.numerics import (
    SWITCH_WINDOW,
    compare_precision,
    dtype_name,
    guarded_step,
    switch_reason,
)
from ..core.progress import CancelToken, Job, Progress, stage
from ..core.runtime import (
    autocast_dtype,
    device_for,
    get_rng_states,
    seed_everything,
    set_rng_states,
    torch_threads,
)
from ..core.volume import Volume
from ..models import build_network, run_network
from ..models.config import ModelConfig
from ..models.store import (
    CHECKPOINT_NAME,
    HISTORY_FIELDS,
    load_checkpoint,
    save_checkpoint,
    save_model,
)
from .augment import Augmenter
from .auto import describe_recipe, resolve
from .checks import check_training_data
from .decoding import tune_decoding
from .holdout import holdout_tiles, validation_origins
from .live import LiveRun, LiveSession
from .losses import dice_score, instance_loss, semantic_loss
from .recipe import TrainConfig
from .sampler import CropSampler, prepare_data
from .start import check_resumable, init_from

#: Batches the first check of mixed precision runs on (failures can be intermittent).
CHECK_BATCHES = 2
#: Non-finite float32 steps in a row that stop the run.
STOP_AFTER = 5


class NonFiniteTraining(RuntimeError):
    """Training produced NaN or inf in float32 too; the last finite model is saved."""


def train(
    image: Volume,
    labels: Volume,
    config: TrainConfig,
    out_dir: str | Path,
    cancel: CancelToken | None = None,
    live: LiveSession | None = None,
) -> Job[Path]:
    """Train a model; a job generator yielding :class:`Progress`, returning the folder.

    Parameters
    ----------
    image, labels : Volume
        (z, y, x) image and painted labels of the same shape (lazy).
    config : TrainConfig
        Settings; those left ``None``/``"auto"`` are decided from the data.
    out_dir : str or Path
        Model folder to write (config.json, weights.pt, history.csv, checkpoint.pt).
    cancel : CancelToken, optional
        Stops training at the next iteration; the model is saved (not tuned).
    live : LiveSession, optional
        Shared with a front end: slices painted meanwhile join the training
        between steps, and weights are published for its preview
        (:mod:`~napari_anatomics.train.live`).

    Yields
    ------
    Progress
        The first event's message is the recipe; ``metrics``: iteration, loss,
        lr, it_s, eta_s, skipped, and val_dice when validating. Notes say when
        painted slices join.

    Returns
    -------
    Path
        The model folder.

    Raises
    ------
    NonFiniteTraining
        When steps keep giving NaN or inf in float32 (the model so far is saved).
    """
    out_dir = Path(out_dir)
    config, why, painted = resolve(config, image, labels)
    mconfig = check_training_data(config, image, labels)
    mconfig.training["auto"] = why
    mconfig.training["painted"] = painted.to_dict()
    if (out_dir / CHECKPOINT_NAME).exists() and not config.resume:
        raise FileExistsError(
            f"{out_dir} already holds a trained model: choose another output folder, "
            "or resume it (--resume)"
        )
    if config.resume:
        check_resumable(out_dir, mconfig)
    device = device_for(config.device)
    yield Progress(0, config.iterations, describe_recipe(config, why, device), note=True)
    with torch_threads(device, config.threads):
        return (yield from _run(image, labels, config, mconfig, out_dir, device, cancel, live))


def _run(image, labels, config, mconfig, out_dir, device, cancel, live) -> Job[Path]:
    """The training loop proper (settings already checked)."""
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    data = prepare_data(
        image.data,
        labels.data,
        config.downsample,
        ignore_value=config.ignore_value,
        cache_mb=config.cache_mb,
    )
    if not config.use_mask:
        data.use_mask, data.annotated[:] = False, True
    mconfig.normalization = data.normalization
    net = build_network(mconfig)
    if config.init_from:
        init_from(net, mconfig, Path(config.init_from))
    net.to(device)
    # Held-out tiles half a window wide (whole objects fit in a few of them).
    held = holdout_tiles(data.shape[1:], max(mconfig.window[1:]) // 2, config.val_fraction)
    sampler = CropSampler(
        data,
        mconfig.window,
        config.task,
        rng,
        holdout=held,
        label_values=mconfig.label_values,
        ignore_value=config.ignore_value,
        distance=config.distance,
        boundary_width=config.boundary_width,
        contact_weight=config.contact_weight,
        fg_fraction=config.object_crops,
        balance=config.balance_objects,
        augmenter=Augmenter(
            brightness=config.brightness,
            contrast=config.contrast,
            elastic=config.elastic,
            scale=config.zoom,
        )
        if config.augment
        else None,
        paste=config.copy_paste if config.augment else 0.0,
    )
    val_crops = validation_origins(data, mconfig.window, held) if held is not None else []
    link = LiveRun(live, sampler, config.iterations) if live is not None else None
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    amp = autocast_dtype(device, config.precision)
    state = {"iteration": 0, "elapsed": 0.0, "history": [], "skipped": 0, "precision": []}
    if config.resume:
        ckpt = load_checkpoint(out_dir / CHECKPOINT_NAME, device)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = {k: ckpt[k] for k in ("iteration", "elapsed", "history")}
        state["skipped"] = int(ckpt.get("skipped", 0))
        state["precision"] = ModelConfig.load(out_dir).training.get("precision_events", [])
        if ckpt.get("precision") == "float32":
            amp = None
        set_rng_states(ckpt["rng"], rng)
    loss_fn = semantic_loss if config.task == "semantic" else instance_loss

    def loss_of(batch) -> torch.Tensor:
        x, y, m = (torch.from_numpy(a).to(device, non_blocking=True) for a in batch)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = _forward(net, x, config.architecture)
        return loss_fn(logits.float(), y, m)

    def record(it: int, event: str) -> Progress:
        state["precision"].append({"iteration": it, "precision": dtype_name(amp), "event": event})
        mconfig.training["precision_events"] = state["precision"]
        mconfig.training["precision_used"] = dtype_name(amp)
        return Progress(it, config.iterations, event, note=True)

    if amp is not None and not config.resume:
        net.train()
        for _ in range(CHECK_BATCHES):
            batch = sampler.batch(config.batch)
            check = compare_precision(net, lambda b=batch: loss_of(b), device, amp)
            if not check.ok:
                break
        name = dtype_name(amp)
        if check.ok:
            yield record(0, f"{name} checked on a real batch: loss {check.loss_mixed:.4g} "
                            f"(float32 {check.loss_float32:.4g}), gradient cosine "
                            f"{check.cosine:.3f}: training in {name}")
        else:
            amp = None
            yield record(0, f"{name} failed its check on a real batch ({check.reason}): "
                            "training in float32")
    else:
        mconfig.training["precision_used"] = dtype_name(amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    if config.resume and "scaler" in ckpt and scaler.is_enabled():
        scaler.load_state_dict(ckpt["scaler"])
    val_every = config.val_every or config.save_every
    start_it, last_saved, streak = state["iteration"], state["iteration"], 0
    recent: list[int] = []  # iterations of recent non-finite steps
    t_start = time.perf_counter() - state["elapsed"]
    t_run = time.perf_counter()

    def save() -> None:
        state["elapsed"] = time.perf_counter() - t_start
        mconfig.iterations = state["iteration"]
        save_model(out_dir, net, mconfig, state["history"])
        save_checkpoint(
            out_dir / CHECKPOINT_NAME,
            {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "iteration": state["iteration"],
                "elapsed": state["elapsed"],
                "history": state["history"],
                "skipped": state["skipped"],
                "precision": dtype_name(amp),
                "rng": get_rng_states(rng),
            },
        )

    finished = False
    try:
        net.train()
        while state["iteration"] < config.iterations:
            if cancel is not None and cancel.cancelled:
                break
            elapsed = time.perf_counter() - t_start
            if config.time_limit_s is not None and elapsed >= config.time_limit_s:
                break
            progress = state["iteration"] / config.iterations
            if config.time_limit_s:
                progress = max(progress, elapsed / config.time_limit_s)
            lr = _lr(config, state["iteration"], progress)
            for group in opt.param_groups:
                group["lr"] = lr
            loss, applied = guarded_step(
                net, opt, scaler, lambda: loss_of(sampler.batch(config.batch))
            )
            state["iteration"] += 1
            it = state["iteration"]
            if applied:
                streak = 0
            else:
                state["skipped"] += 1
                streak += 1
                recent = [i for i in recent if i > it - SWITCH_WINDOW] + [it]
                if amp is not None:
                    reason = switch_reason(
                        recent,
                        amp,
                        lambda b=sampler.batch(config.batch), a=amp: compare_precision(
                            net, lambda: loss_of(b), device, a
                        ),
                    )
                    net.train()
                    if reason:
                        amp = None
                        scaler = torch.amp.GradScaler("cuda", enabled=False)
                        yield record(it, f"{reason} at iteration {it}: switched to float32 "
                                         "(non-finite steps were skipped, the weights are "
                                         "the last finite ones)")
                        streak, recent = 0, []
                elif streak >= STOP_AFTER:
                    raise NonFiniteTraining(
                        f"training stopped at iteration {it}: {streak} steps in a row gave "
                        f"NaN or inf in float32 (the last finite model is saved in {out_dir}); "
                        f"try a lower learning rate (--lr {config.lr / 4:g}) and check the "
                        "image for blank or saturated regions"
                    )
            metrics = {"iteration": float(it), "loss": loss, "lr": lr,
                       "skipped": float(state["skipped"])}
            if val_crops and (it % val_every == 0 or it == config.iterations):
                metrics["val_dice"] = _validate(net, sampler, val_crops, config, device, amp)
                net.train()
            now = time.perf_counter()
            metrics["it_s"] = (it - start_it) / max(now - t_run, 1e-9)
            metrics["eta_s"] = _eta(config, it, metrics["it_s"], now - t_start)
            state["history"].append(
                {k: metrics.get(k, "") for k in HISTORY_FIELDS}
                | {"seconds": now - t_start, "precision": dtype_name(amp)}
            )
            if it % config.save_every == 0:
                save()
                last_saved = it
            yield Progress(it, config.iterations, f"iteration {it}", metrics)
            note = link.step(net, it, mconfig) if link is not None else None
            if note is not None:
                mconfig.training["slices_joined"] = [j.to_dict() for j in live.joined]
                yield note
        finished = cancel is None or not cancel.cancelled
    finally:
        if state["iteration"] != last_saved or not (out_dir / CHECKPOINT_NAME).exists():
            save()
    if finished and config.tune_decoding and state["iteration"] > state["skipped"]:
        net.eval()
        painted_labels = link.labels(labels) if link is not None else labels
        result = yield from stage(
            "decoding",
            tune_decoding(net, mconfig, image, painted_labels, held, device, amp, cancel),
        )
        if result is not None:
            mconfig.decoding, mconfig.validation = result
            mconfig.save(out_dir)
    return out_dir


def _forward(net: torch.nn.Module, x: torch.Tensor, architecture: str) -> torch.Tensor:
    """Logits (B, C, Z, Y, X) for (B, 1, Z, Y, X), 2D nets applied per slice."""
    return run_network(net, x, 2 if architecture == "unet2d" else 3)


@torch.no_grad()
def _validate(net, sampler, origins, config, device, amp) -> float:
    net.eval()
    scores = []
    for origin in origins:
        image, target, mask = sampler.crop(origin, augment=False, held_out=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = _forward(net, torch.from_numpy(image[None]).to(device), config.architecture)
        scores.append(
            dice_score(
                logits.float().cpu(),
                torch.from_numpy(target[None]),
                torch.from_numpy(mask[None]),
                config.task,
            )
        )
    return float(np.mean(scores))


def _lr(config: TrainConfig, iteration: int, progress: float) -> float:
    """Linear warmup, then cosine decay to 1 % of ``lr`` as ``progress`` goes 0 -> 1."""
    if iteration < config.warmup:
        return config.lr * (iteration + 1) / config.warmup
    span = max(1e-9, 1.0 - config.warmup / max(config.iterations, 1))
    t = min(1.0, max(0.0, (progress - config.warmup / max(config.iterations, 1)) / span))
    return float(config.lr * (0.01 + 0.99 * 0.5 * (1.0 + np.cos(np.pi * t))))


def _eta(config: TrainConfig, it: int, it_s: float, elapsed: float) -> float:
    eta = (config.iterations - it) / max(it_s, 1e-9)
    if config.time_limit_s is not None:
        eta = min(eta, max(0.0, config.time_limit_s - elapsed))
    return float(eta)


__all__ = ["NonFiniteTraining", "TrainConfig", "train"]
