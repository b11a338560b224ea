"""Training: learn semantic or instance segmentation from a few painted slices.

:func:`train` is a job generator (see :mod:`~napari_anatomics.progress`): it
checks the data and the settings first (clear errors before any training),
then yields one :class:`Progress` per iteration (loss, learning rate, it/s,
ETA, validation Dice) and returns the model folder.

* Only painted slices count (see :mod:`~napari_anatomics.targets`).
* AdamW with linear warmup and cosine decay; with a time limit the cosine
  follows whichever of iterations or time runs out first.
* CUDA with mixed precision (float16 autocast + GradScaler) when present, else
  the CPU with one torch thread per core, in bfloat16 autocast where the CPU
  has bfloat16 hardware (AMX, AVX-512 BF16; twice the steps per minute).
* Checkpoints (``checkpoint.pt``) every ``save_every`` iterations, at the end,
  on cancel and when the generator is closed, written atomically. ``resume``
  restores weights, optimizer, scaler, iteration, elapsed time and the
  torch/numpy/python random states, so a resumed seeded run equals an
  uninterrupted one. ``init_from`` fine-tunes an earlier model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .augment import Augmenter
from .losses import dice_score, instance_loss, semantic_loss
from .model_config import ModelConfig
from .model_store import (
    CHECKPOINT_NAME,
    HISTORY_FIELDS,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from .models import build_network, run_network
from .progress import CancelToken, Job, Progress
from .sampling import CropSampler, prepare_data
from .training_checks import check_training_data
from .training_runtime import (
    autocast_dtype,
    cpu_threads,
    device_for,
    get_rng_states,
    seed_everything,
    set_rng_states,
)
from .volume import Volume

#: Default (z, y, x) windows at model resolution.
DEFAULT_WINDOW_3D = (8, 128, 128)
DEFAULT_WINDOW_2D = (1, 256, 256)


@dataclass
class TrainConfig:
    """Settings of one training run (stored in the model's ``config.json``).

    Parameters
    ----------
    task : {"semantic", "instance"}
    window : (int, int, int), optional
        Crop (z, y, x) at model resolution; default (8, 128, 128) for 3D and
        (1, 256, 256) for 2D, shrunk to the volume.
    voxel_size : (float, float, float), optional
        (z, y, x) nm; default: the image's.
    downsample : (int, int, int)
        (z, y, x) reduction before the network (block mean for the image,
        centre voxel for the labels); prediction restores full resolution.
    iterations, batch, lr, weight_decay, warmup : training schedule.
    save_every : int
        Checkpoint every N iterations.
    time_limit_s : float, optional
        Stop (and save) after this many seconds of training.
    val_fraction : float
        Hold out this fraction of the x extent for a validation Dice.
    val_every : int, optional
        Validate every N iterations (default: ``save_every``).
    init_from : path, optional
        Model folder to start from (fine-tuning).
    resume : bool
        Continue the run whose checkpoint is in the output folder.
    device : {"auto", "cpu", "cuda"}
    architecture : {"resunet3d", "unet2d"}
    width, depth : int
        Network size (channels of the top level, number of levels).
    norm : {"batch", "instance", "group"}
        Normalization of the 3D U-Net.
    encoder : str
        smp encoder of the 2D U-Net (``encoder_weights=None``).
    distance : bool
        Instance task: add a distance channel ("BCD" targets).
    boundary_width : int
        Instance task: half-width of the boundary band (voxels).
    contact_weight : float
        Instance task: loss weight of the voxels where two painted objects
        touch (1 = like any voxel). Raising it puts more of the loss on the
        boundary between touching objects, otherwise a tiny share (~1 % of
        the boundary voxels of the chloroplast data, where a weight of 10 did
        not remove the merges).
    seed : int
    ignore_value : int, optional
        Label value meaning "not painted".
    class_names, class_values : list, optional
        Semantic classes (default: every painted value, named ``class_<v>``).
    precision : {"auto", "mixed", "float32"}
        Mixed precision (float16 on CUDA, bfloat16 on the CPU) or float32;
        "auto" mixes on CUDA and on CPUs with bfloat16 hardware.
    num_threads : int, optional
        CPU threads (default: one per idle core, see :func:`cpu_threads`).
    fg_fraction : float
        Share of crops centred on a painted object.
    balance_objects : bool
        Centre those crops on each object equally often (else by area).
    augment, elastic, scale : augmentation switches (elastic: strength in voxels;
        scale: largest in-plane zoom, 0.25 = x0.8 to x1.25).
    copy_paste : float
        Share of crops that get one more painted object pasted in from
        elsewhere (copy-paste augmentation: objects seen away from their
        usual surroundings); 0 disables it.
    brightness, contrast : float
        Intensity augmentation: largest shift of the normalized image (std
        units) and largest relative change of contrast (0.2 = x0.8 to x1.2).
        Raise them when the stack to label is darker, paler or flatter than
        the painted region.
    use_mask : bool
        Mask unannotated slices out of the loss (turn off only to compare).
    cache_mb : float
        Keep the reduced training data in memory below this size.
    """

    task: Literal["semantic", "instance"] = "instance"
    window: tuple[int, int, int] | None = None
    voxel_size: tuple[float, float, float] | None = None
    downsample: tuple[int, int, int] = (1, 1, 1)
    iterations: int = 1000
    batch: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    save_every: int = 200
    time_limit_s: float | None = None
    val_fraction: float = 0.0
    val_every: int | None = None
    init_from: str | None = None
    resume: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    architecture: str = "resunet3d"
    width: int = 16
    depth: int = 4
    norm: str = "batch"
    encoder: str = "resnet18"
    distance: bool = False
    boundary_width: int = 1
    contact_weight: float = 1.0
    seed: int = 0
    ignore_value: int | None = None
    class_names: list[str] | None = None
    class_values: list[int] | None = None
    num_threads: int | None = None
    precision: Literal["auto", "mixed", "float32"] = "auto"
    fg_fraction: float = 0.5
    balance_objects: bool = True
    augment: bool = True
    elastic: float = 0.0
    scale: float = 0.0
    copy_paste: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    use_mask: bool = True
    cache_mb: float = 1024.0

    def validate(self, image: Volume, labels: Volume) -> ModelConfig:
        """Check settings and data before training; return the model config to train.

        Raises
        ------
        ValueError
            With a message saying what to change (window, downsampling, labels...).
        """
        return check_training_data(self, image, labels)


def train(
    image: Volume,
    labels: Volume,
    config: TrainConfig,
    out_dir: str | Path,
    cancel: CancelToken | None = None,
) -> Job[Path]:
    """Train a model; a job generator yielding :class:`Progress`, returning the folder.

    Parameters
    ----------
    image, labels : Volume
        (z, y, x) image and painted labels of the same shape (lazy).
    config : TrainConfig
    out_dir : str or Path
        Model folder to write (config.json, weights.pt, history.csv, checkpoint.pt).
    cancel : CancelToken, optional
        Stops training at the next iteration; the model is saved.

    Yields
    ------
    Progress
        ``metrics``: iteration, loss, lr, it_s, eta_s, and val_dice when validating.

    Returns
    -------
    Path
        The model folder.
    """
    out_dir = Path(out_dir)
    mconfig = config.validate(image, labels)
    if (out_dir / CHECKPOINT_NAME).exists() and not config.resume:
        raise FileExistsError(
            f"{out_dir} already holds a trained model: choose another output folder, "
            "or resume it (--resume)"
        )
    if config.resume:
        _check_resumable(out_dir, mconfig)
    device = device_for(config.device)
    yield Progress(0, config.iterations, "preparing data")
    old_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(config.num_threads or cpu_threads())
    try:
        return (yield from _run(image, labels, config, mconfig, out_dir, device, cancel))
    finally:
        torch.set_num_threads(old_threads)


def _run(image, labels, config, mconfig, out_dir, device, cancel) -> Job[Path]:
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
        data.annotated[:] = True
    mconfig.normalization = data.normalization
    net = build_network(mconfig)
    if config.init_from:
        _init_from(net, mconfig, Path(config.init_from))
    net.to(device)
    x_split = _x_split(data.shape[2], mconfig.window[2], config.val_fraction)
    sampler = CropSampler(
        data,
        mconfig.window,
        config.task,
        rng,
        x_range=(0, x_split),
        label_values=mconfig.label_values,
        ignore_value=config.ignore_value,
        distance=config.distance,
        boundary_width=config.boundary_width,
        contact_weight=config.contact_weight,
        fg_fraction=config.fg_fraction,
        balance=config.balance_objects,
        augmenter=Augmenter(
            brightness=config.brightness,
            contrast=config.contrast,
            elastic=config.elastic,
            scale=config.scale,
        )
        if config.augment
        else None,
        paste=config.copy_paste if config.augment else 0.0,
    )
    val_crops = _val_origins(data, mconfig.window, x_split) if config.val_fraction else []
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    amp = autocast_dtype(device, config.precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    state = {"iteration": 0, "elapsed": 0.0, "history": []}
    if config.resume:
        ckpt = load_checkpoint(out_dir / CHECKPOINT_NAME, device)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        state = {k: ckpt[k] for k in ("iteration", "elapsed", "history")}
        set_rng_states(ckpt["rng"], rng)
    loss_fn = semantic_loss if config.task == "semantic" else instance_loss
    val_every = config.val_every or config.save_every
    start_it, last_saved = state["iteration"], state["iteration"]
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
                "rng": get_rng_states(rng),
            },
        )

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
            loss = _step(net, opt, scaler, sampler, config, loss_fn, device, amp)
            state["iteration"] += 1
            it = state["iteration"]
            metrics = {"iteration": float(it), "loss": loss, "lr": lr}
            if val_crops and (it % val_every == 0 or it == config.iterations):
                metrics["val_dice"] = _validate(net, sampler, val_crops, config, device, amp)
                net.train()
            now = time.perf_counter()
            metrics["it_s"] = (it - start_it) / max(now - t_run, 1e-9)
            metrics["eta_s"] = _eta(config, it, metrics["it_s"], now - t_start)
            state["history"].append(
                {k: metrics.get(k, "") for k in HISTORY_FIELDS} | {"seconds": now - t_start}
            )
            if it % config.save_every == 0:
                save()
                last_saved = it
            yield Progress(it, config.iterations, f"iteration {it}", metrics)
    finally:
        if state["iteration"] != last_saved or not (out_dir / CHECKPOINT_NAME).exists():
            save()
    return out_dir


def _step(net, opt, scaler, sampler, config, loss_fn, device, amp) -> float:
    image, target, mask = sampler.batch(config.batch)
    x = torch.from_numpy(image).to(device, non_blocking=True)
    y = torch.from_numpy(target).to(device, non_blocking=True)
    m = torch.from_numpy(mask).to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        logits = _forward(net, x, config.architecture)
    loss = loss_fn(logits.float(), y, m)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return float(loss.detach())


def _forward(net: torch.nn.Module, x: torch.Tensor, architecture: str) -> torch.Tensor:
    """Logits (B, C, Z, Y, X) for (B, 1, Z, Y, X), 2D nets applied per slice."""
    return run_network(net, x, 2 if architecture == "unet2d" else 3)


@torch.no_grad()
def _validate(net, sampler, origins, config, device, amp) -> float:
    net.eval()
    scores = []
    for origin in origins:
        image, target, mask = sampler.crop(origin, augment=False)
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


def _x_split(nx: int, wx: int, val_fraction: float) -> int:
    if not val_fraction:
        return nx
    return nx - max(wx, round(nx * val_fraction))


def _val_origins(data, window, x_split: int, max_crops: int = 8) -> list[tuple[int, int, int]]:
    """Fixed validation windows tiling the held-out x range over annotated slices."""
    nz, ny, nx = data.shape
    wz, wy, wx = window
    zs = sorted({int(np.clip(z - wz // 2, 0, nz - wz)) for z in np.flatnonzero(data.annotated)})
    ys = list(range(0, ny - wy + 1, wy)) or [0]
    xs = list(range(x_split, nx - wx + 1, wx)) or [nx - wx]
    origins = [(z, y, x) for z in zs for y in ys for x in xs]
    step = max(1, len(origins) // max_crops)
    return origins[::step][:max_crops]


def _check_resumable(out_dir: Path, mconfig: ModelConfig) -> None:
    if not (out_dir / CHECKPOINT_NAME).exists():
        raise FileNotFoundError(f"nothing to resume: {out_dir} has no {CHECKPOINT_NAME}")
    saved = ModelConfig.load(out_dir)
    for key in ("architecture", "targets", "window", "downsample"):
        if getattr(saved, key) != getattr(mconfig, key):
            raise ValueError(
                f"cannot resume {out_dir}: it was trained with {key} {getattr(saved, key)}, "
                f"this run asks for {getattr(mconfig, key)}; resume with the same settings"
            )


def _init_from(net: torch.nn.Module, mconfig: ModelConfig, folder: Path) -> None:
    """Load an earlier model's weights (fine-tuning), keeping its normalization."""
    earlier = load_model(folder, device="cpu")
    old, new = earlier.config.architecture, mconfig.architecture
    if old != new or earlier.config.targets != mconfig.targets:
        raise ValueError(
            f"cannot fine-tune from {folder}: its network ({old.get('name')}, outputs "
            f"{earlier.config.targets}) differs from this run's ({new.get('name')}, outputs "
            f"{mconfig.targets}); use the same task, architecture, width, depth and window"
        )
    net.load_state_dict(earlier.net.state_dict())
    mconfig.normalization = dict(earlier.config.normalization)
    mconfig.training["init_from"] = str(folder)


__all__ = ["TrainConfig", "cpu_threads", "train"]
