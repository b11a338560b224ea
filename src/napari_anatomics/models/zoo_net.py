"""Networks from other tools: a BioImage.IO package's TorchScript, run like ours.

:class:`ZooNet` wraps the TorchScript module of a package imported by
:mod:`~napari_anatomics.models.zoo_import` (its ``architecture`` is
``{"name": "torchscript", ...}``). It takes our ``(N, 1, [Z,] Y, X)`` batches, puts
their axes in the package's order, runs the module, applies the package's
activation and returns probabilities in our channel order
(``ModelConfig.targets``). The module is read with ``torch.jit.load``: no Python
source of the package runs and nothing is unpickled.

The architecture dict names the package's axes in our words (``"batch"``,
``"channel"``, ``"z"``, ``"y"``, ``"x"``) in the package's order
(``input_axes``, ``output_axes``), its ``activation`` (``"sigmoid"``,
``"softmax"`` or None) and, for each of our channels, where it comes from
(``channels``: a package channel index, or a list of indices ``[i, j]`` for
``1 - max(p_i, p_j)``, a background the package does not output).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: The architecture name of imported TorchScript networks.
TORCHSCRIPT = "torchscript"
#: Our axis order: what :class:`ZooNet` takes and returns.
AXES = ("batch", "channel", "z", "y", "x")


class ZooNet(nn.Module):
    """A package's TorchScript module that maps our batches to our probabilities.

    Parameters
    ----------
    module : torch.jit.ScriptModule
        The package's network.
    architecture : dict
        ``spatial_dims``, ``input_axes``, ``output_axes``, ``activation`` and
        ``channels`` (see the module docstring).
    """

    #: Its outputs are probabilities already (no softmax or sigmoid to add).
    outputs_probabilities = True

    def __init__(self, module: nn.Module, architecture: dict[str, Any]) -> None:
        super().__init__()
        self.module = module
        self.spatial_dims = int(architecture["spatial_dims"])
        self.inputs = [str(a) for a in architecture["input_axes"]]
        self.outputs = [str(a) for a in architecture["output_axes"]]
        self.activation = architecture.get("activation")
        self.channels = list(architecture["channels"])

    def package_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The package's output, activation applied, for an input in the package's axes."""
        out = self.module(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if self.activation == "sigmoid":
            return torch.sigmoid(out)
        if self.activation == "softmax":
            return torch.softmax(out, dim=self.outputs.index("channel"))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(N, C, *space)`` for a normalized batch ``(N, 1, *space)``."""
        have = ["batch", "channel", *AXES[5 - self.spatial_dims :]]
        if "channel" not in self.inputs:
            x, have = x[:, 0], [a for a in have if a != "channel"]
        if "batch" in self.inputs:
            out = self._run(x, have)
        else:
            out = torch.stack([self._run(item, have[1:]) for item in x])
        parts = [
            out[:, entry] if isinstance(entry, int) else 1 - out[:, list(entry)].amax(1)
            for entry in self.channels
        ]
        return torch.stack(parts, 1).float().clamp(0, 1)

    def _run(self, x: torch.Tensor, have: list[str]) -> torch.Tensor:
        """Run the module on ``x`` (axes ``have``); the output in our order, with a channel."""
        out = self.package_forward(x.permute([have.index(a) for a in self.inputs]))
        names = list(self.outputs)
        if "channel" not in names:
            out, names = out.unsqueeze(0), ["channel", *names]
        return out.permute([names.index(a) for a in AXES if a in names])


def load_torchscript(
    path: str | Path, architecture: dict[str, Any], device: str | torch.device = "cpu"
) -> ZooNet:
    """Load a TorchScript archive as a :class:`ZooNet` on ``device``.

    Parameters
    ----------
    path : str or Path
        The archive (a model folder's ``weights.pt``).
    architecture : dict
        The model config's architecture (``"name": "torchscript"``).
    device : str or torch.device
        Where the network runs.

    Returns
    -------
    ZooNet
        In evaluation mode.

    Raises
    ------
    ValueError
        When the file is not a TorchScript archive (or is damaged).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated, still read
            module = torch.jit.load(str(path), map_location=torch.device(device))
    except (RuntimeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:100]
        raise ValueError(
            f"{path}: is not a TorchScript archive or is damaged ({first}); "
            "import the package again"
        ) from None
    return ZooNet(module, architecture).eval()
