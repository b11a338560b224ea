"""Which mixed-precision path this machine has, for tests that exercise one.

A mixed-precision test runs on the path a user's ``precision="auto"`` run
would take on this machine, and is skipped, with the reason, where there is
none: a CPU without bfloat16 hardware only emulates it (slowly, and with
results no user run produces), so a pass or fail there says nothing.
"""

from __future__ import annotations

import pytest
import torch

from napari_anatomics.core.runtime import cpu_has_bf16


def no_mixed_precision_reason(device: str = "auto") -> str | None:
    """Why ``device`` has no mixed-precision path here; None when it has one.

    ``"cuda"``: a CUDA GPU (float16 or bfloat16 autocast). ``"cpu"``: bfloat16
    matrix hardware (AMX or AVX-512 BF16). ``"auto"``: the device a job with
    ``device="auto"`` would use (CUDA when present, else the CPU).
    """
    auto = device == "auto"
    if auto:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return None if torch.cuda.is_available() else "no CUDA GPU on this machine"
    if cpu_has_bf16():
        return None
    return (
        f"{'no CUDA GPU and ' if auto else ''}no bfloat16 hardware on this CPU (AMX or "
        "AVX-512 BF16): precision='auto' runs float32 here, mixed would only be emulated"
    )


def requires_mixed_precision(device: str = "auto") -> pytest.MarkDecorator:
    """A mark that skips a test unless ``device`` has a mixed-precision path here."""
    reason = no_mixed_precision_reason(device)
    return pytest.mark.skipif(reason is not None, reason=reason or "")
