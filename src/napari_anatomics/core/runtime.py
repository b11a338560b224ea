"""Where and how jobs run: device, CPU threads, precision, seeds, RNG states.

RNG states are stored as JSON text and tensors so that checkpoints load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


def device_for(name: str) -> torch.device:
    """The torch device for ``"auto"``, ``"cpu"`` or ``"cuda"`` (clear error if absent)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' was asked for but no CUDA GPU is available: use auto or cpu"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU does bfloat16 matrix maths in hardware (AMX or AVX-512 BF16)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


#: Values of the ``precision`` setting of training and prediction.
PRECISIONS = ("auto", "mixed", "float32")


def check_precision(precision: str) -> None:
    """Raise ValueError unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, mixed or float32, not {precision!r}")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of a run, or None for plain float32.

    Parameters
    ----------
    device : torch.device
    precision : {"auto", "mixed", "float32"}
        "auto" is mixed precision on CUDA and on CPUs with bfloat16 hardware
        (there it halved the step time of the 2D U-Net), float32 elsewhere.

    Returns
    -------
    torch.float16 on CUDA (with a gradient scaler), torch.bfloat16 on the CPU, or None.
    """
    check_precision(precision)
    if precision == "float32":
        return None
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if precision == "mixed" or cpu_has_bf16() else None


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    No guess from the load average: it lags by minutes (an idle machine still
    reads ~1 right after a job), and a run that starts then would keep half
    the machine idle for its whole length.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, int(quota)))
    return max(1, cores)


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 CFS quota), None if unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else float(quota) / float(period)
    except (OSError, ValueError):
        pass
    try:
        base = Path("/sys/fs/cgroup/cpu")
        quota_us = float((base / "cpu.cfs_quota_us").read_text())
        period_us = float((base / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


#: Cores a job started from a panel leaves to napari's event loop.
VIEWER_CORES = 1
#: Environment variable that sets the torch threads of every job (e.g. 1 in CI).
THREADS_ENV = "ANATOMICS_THREADS"


def cpu_threads(requested: int | None = None, *, leave_free: int = 0) -> int:
    """Torch CPU threads for a job: ``requested``, else ``$ANATOMICS_THREADS``, else
    every usable core (:func:`usable_cores`) less ``leave_free``.

    Parameters
    ----------
    requested : int, optional
        Asked for by the user: wins.
    leave_free : int
        Cores left to others when the count is chosen here: the panels leave one to
        the viewer (:data:`VIEWER_CORES`) so it stays responsive.

    Raises
    ------
    ValueError
        If ``requested`` or the environment variable is not a whole number >= 1.
    """
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"threads must be at least 1, not {requested}")
        return int(requested)
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(
                f"{THREADS_ENV}={text!r} is not a number of threads: set it to a whole "
                "number >= 1, or unset it to use every core"
            )
        return int(text)
    return max(1, usable_cores() - int(leave_free))


@contextlib.contextmanager
def torch_threads(device: torch.device, threads: int | None = None) -> Iterator[int]:
    """Run a block with torch's CPU threads set by :func:`cpu_threads`, then put them back.

    Training and prediction both run inside it, so one rule decides the threads.
    On CUDA the setting is left alone.

    Parameters
    ----------
    device : torch.device
        Where the job runs.
    threads : int, optional
        Asked for by the user; else ``$ANATOMICS_THREADS``, else every usable core.

    Yields
    ------
    int
        The threads the block runs with (torch's current count on CUDA).
    """
    previous = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> None:
    """Seed python, numpy (global) and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def get_rng_states(rng: np.random.Generator) -> dict[str, Any]:
    """RNG states as JSON text and tensors (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()  # noqa: NPY002
    states = {
        "python": json.dumps(random.getstate()),
        "numpy_global": json.dumps([np_state[0], np_state[1].tolist(), *np_state[2:]]),
        "numpy": json.dumps(rng.bit_generator.state),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any], rng: np.random.Generator) -> None:
    """Restore what :func:`get_rng_states` saved (and ``rng``'s state)."""
    py = json.loads(states["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    g = json.loads(states["numpy_global"])
    np.random.set_state((g[0], np.asarray(g[1], dtype=np.uint32), *g[2:]))  # noqa: NPY002
    rng.bit_generator.state = json.loads(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
