"""Numerics that cannot fail silently: mixed precision proves itself, NaN never trains.

Mixed precision (bfloat16 autocast on CPUs with the hardware, float16 on CUDA)
doubles the training steps per minute where it works, and on some CPUs it does
not: on an AMD EPYC with AVX-512 BF16 (no AMX) and one torch thread, the
gradients of the 3D U-Net were NaN from the very first bfloat16 step, while
float32 and the 2D U-Net were fine. So:

* :func:`compare_precision` runs the real network on a real batch in float32
  and in the mixed dtype (forward and backward, the network restored after)
  and says whether the mixed run is finite and close;
* :func:`guarded_step` never lets a non-finite loss or gradient reach the
  weights: the step is skipped (normalization statistics restored) and
  reported, and the training loop decides what to do (switch to float32,
  stop with a clear line);
* :func:`non_finite_tensors` lets a model folder refuse to save, and
  prediction refuse to load, weights that hold NaN or inf.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

#: Non-finite steps within :data:`SWITCH_WINDOW` iterations after which a mixed-precision
#: run switches to float32 (float16 on CUDA skips a few steps while its loss scale
#: settles: more there).
SWITCH_AFTER = {torch.bfloat16: 3, torch.float16: 20}
SWITCH_WINDOW = 100
#: Mixed precision passes when its loss is within this relative distance of float32's...
LOSS_RTOL = 0.05
#: ... and its gradient points the same way (cosine similarity at least this).
GRAD_COSINE = 0.9


@dataclass
class PrecisionCheck:
    """Outcome of :func:`compare_precision`.

    Parameters
    ----------
    ok : bool
        The mixed-precision step is finite and close to float32's.
    reason : str
        What failed (empty when ``ok``), in words for a log line.
    loss_float32, loss_mixed : float
        The two losses of the same batch.
    cosine : float
        Cosine similarity of the two gradients (NaN if one is not finite).
    """

    ok: bool
    reason: str
    loss_float32: float
    loss_mixed: float
    cosine: float


def dtype_name(dtype: torch.dtype | None) -> str:
    """``"bfloat16"``, ``"float16"`` or ``"float32"`` (None) for logs and config files."""
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


def compare_precision(
    net: torch.nn.Module,
    loss_of_batch: Callable[[], torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
) -> PrecisionCheck:
    """Run one forward and backward pass in float32 and under ``dtype`` autocast.

    Parameters
    ----------
    net : torch.nn.Module
        The network being trained; its weights, buffers (normalization
        statistics) and gradients are as before when this returns.
    loss_of_batch : callable
        Computes the loss of one fixed batch with ``net`` (called twice).
    device : torch.device
    dtype : torch.dtype
        The mixed-precision dtype to check (bfloat16 or float16).

    Returns
    -------
    PrecisionCheck
    """
    state = copy.deepcopy(net.state_dict())
    # float16 gradients underflow without scaling: scale as GradScaler would.
    scale = 1024.0 if dtype == torch.float16 else 1.0
    results = []
    try:
        for amp in (None, dtype):
            net.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = loss_of_batch()
            (loss.float() * scale).backward()
            grads = [
                p.grad.detach().float().flatten() for p in net.parameters() if p.grad is not None
            ]
            flat = torch.cat(grads) / scale if grads else torch.zeros(1, device=device)
            results.append((float(loss.detach()), flat))
            net.load_state_dict(state)
    finally:
        net.zero_grad(set_to_none=True)
        net.load_state_dict(state)
    (loss32, grad32), (loss_mixed, grad_mixed) = results
    finite = bool(torch.isfinite(grad_mixed).all())
    cosine = (
        float(torch.nn.functional.cosine_similarity(grad32, grad_mixed, dim=0))
        if finite
        else float("nan")
    )
    name = dtype_name(dtype)
    if loss_mixed != loss_mixed or abs(loss_mixed) == float("inf"):
        reason = f"the {name} loss is not finite ({loss_mixed})"
    elif not finite:
        reason = f"the {name} gradients hold NaN or inf"
    elif abs(loss_mixed - loss32) > LOSS_RTOL * max(abs(loss32), 1e-6):
        reason = f"the {name} loss {loss_mixed:.4g} differs from float32's {loss32:.4g}"
    elif not cosine >= GRAD_COSINE:
        reason = f"the {name} gradient differs from float32's (cosine {cosine:.3f})"
    else:
        reason = ""
    return PrecisionCheck(not reason, reason, loss32, loss_mixed, cosine)


def switch_reason(
    recent: list[int], dtype: torch.dtype, recheck: Callable[[], PrecisionCheck]
) -> str:
    """Why a mixed-precision run should go to float32 now ("" to keep going).

    Parameters
    ----------
    recent : list of int
        Iterations of the non-finite steps of the last :data:`SWITCH_WINDOW`.
    dtype : torch.dtype
        The run's mixed-precision dtype.
    recheck : callable
        Runs :func:`compare_precision` on a fresh batch; called at the first
        non-finite step of a window.
    """
    name = dtype_name(dtype)
    if len(recent) >= SWITCH_AFTER.get(dtype, 3):
        return f"{len(recent)} of the last {SWITCH_WINDOW} {name} steps gave NaN or inf"
    if len(recent) == 1:
        check = recheck()
        if not check.ok:
            return f"a {name} step gave NaN or inf and the re-check failed ({check.reason})"
    return ""


def grads_finite(net: torch.nn.Module) -> bool:
    """True when every gradient of ``net`` is finite (one reduction per tensor)."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if not grads:
        return True
    norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else [
        g.norm() for g in grads
    ]
    return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())


def guarded_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_of_batch: Callable[[], torch.Tensor],
) -> tuple[float, bool]:
    """One optimizer step that is skipped when the loss or a gradient is not finite.

    Normalization statistics updated by the forward pass of a skipped step are
    put back, so nothing non-finite is left in the network.

    Parameters
    ----------
    net, optimizer, scaler
        The network, its optimizer and the (possibly disabled) gradient scaler.
    loss_of_batch : callable
        Forward pass (under whatever autocast the caller chose) returning the loss.

    Returns
    -------
    loss : float
    applied : bool
        False when the step was skipped.
    """
    buffers = [b.detach().clone() for b in net.buffers()]
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of_batch()
    value = float(loss.detach())
    finite = value == value and abs(value) != float("inf")
    if finite:
        scaler.scale(loss).backward()
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
        finite = grads_finite(net)
    if finite:
        scaler.step(optimizer)
        scaler.update()
        return value, True
    optimizer.zero_grad(set_to_none=True)
    if scaler.is_enabled():
        scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
    with torch.no_grad():
        for saved, buffer in zip(buffers, net.buffers()):
            buffer.copy_(saved)
    return value, False


def non_finite_tensors(state: Mapping[str, torch.Tensor] | Iterable) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or inf."""
    items = state.items() if isinstance(state, Mapping) else state
    return [
        name
        for name, tensor in items
        if torch.is_tensor(tensor)
        and tensor.is_floating_point()
        and not bool(torch.isfinite(tensor).all())
    ]
