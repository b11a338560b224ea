"""The network as a BioImage.IO package carries it: source file, probability wrapper, TorchScript.

A package's network outputs probabilities (softmax over classes for semantic
models, sigmoid per channel for instance models). :func:`network_source` writes
one self-contained Python file that rebuilds it (the 3D U-Net's own module, or
the smp U-Net builder), :class:`ProbabilityNet` is the same wrapper in this
package, and :func:`trace` adds TorchScript when tracing reproduces it.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import unet3d
from .config import ModelConfig


def network_source(config: ModelConfig) -> str:
    """One self-contained Python file that rebuilds the packaged network.

    Parameters
    ----------
    config : ModelConfig
        The model's config (its architecture names the network).

    Returns
    -------
    str
        Python source defining ``AnatomicsNetwork(task, architecture)``, whose state
        dict is the model's with a ``net.`` prefix. 2D models import
        segmentation-models-pytorch; the 3D U-Net needs torch only.
    """
    wrapper = '''

class AnatomicsNetwork(nn.Module):
    """A napari-anatomics network that outputs probabilities."""

    def __init__(self, task: str, architecture: dict):
        super().__init__()
        self.task = task
        self.net = build(architecture)

    def forward(self, x):
        logits = self.net(x)
        if self.task == "semantic":
            return torch.softmax(logits, dim=1)
        return torch.sigmoid(logits)
'''
    if config.spatial_dims == 2:
        from . import smp2d

        body = inspect.getsource(smp2d.build_unet2d).replace("def build_unet2d", "def build")
        head = "from typing import Any\n\nimport torch\nfrom torch import nn\n\n\n"
        return head + body + wrapper
    build = '''

def build(arch: dict) -> nn.Module:
    return ResUNet3D(
        int(arch.get("in_channels", 1)),
        int(arch["out_channels"]),
        [tuple(k) for k in arch["kernels"]],
        [tuple(s) for s in arch["strides"]],
        width=int(arch.get("width", 16)),
        norm=str(arch.get("norm", "batch")),
    )
'''
    return inspect.getsource(unet3d) + build + wrapper


class ProbabilityNet(torch.nn.Module):
    """The model as packaged: a normalized ``(B, 1, [Z,] Y, X)`` batch -> probabilities.

    Parameters
    ----------
    model : TrainedModel
        A loaded model; its network is shared, not copied.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.net = model.net
        self.task = model.config.task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return torch.softmax(logits, 1) if self.task == "semantic" else torch.sigmoid(logits)


def trace(wrapped: torch.nn.Module, raw: np.ndarray, probs: np.ndarray, path: Path) -> bool:
    """Save TorchScript of ``wrapped`` to ``path`` if tracing reproduces it.

    Parameters
    ----------
    wrapped : torch.nn.Module
        The :class:`ProbabilityNet` to trace.
    raw : ndarray
        An example input (batch, channel, space).
    probs : ndarray
        The packaged test output, whose shape the traced network must give.
    path : Path
        Where the TorchScript goes.

    Returns
    -------
    bool
        True when the file was written (same output within 1e-4).
    """
    example = torch.from_numpy(raw.astype(np.float32))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.trace is deprecated, still read
            traced = torch.jit.trace(wrapped.eval(), example, check_trace=False)
            same = np.allclose(traced(example).numpy(), wrapped(example).numpy(), atol=1e-4)
    except Exception:  # a network that does not trace keeps its state dict only
        return False
    if same:
        traced.save(str(path))
    return bool(same) and probs.shape == tuple(wrapped(example).shape)
