"""Where and how reproducibly training runs: device, CPU threads, seeds, RNG states.

RNG states are stored as JSON text and tensors so that checkpoints load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import random
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


def cpu_threads() -> int:
    """Torch threads for training: one per core, fewer on a machine already busy.

    Measured on 2 shared cores with a load average of 7: a 3D U-Net step took
    3-5x longer in wall time with 2 threads than with 1, because each
    synchronised thread waits for the other to be scheduled.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not available on every platform
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


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
