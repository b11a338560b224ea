"""Networks: a residual anisotropic 3D U-Net, 2D U-Nets from smp, imported TorchScript.

:func:`build_network` rebuilds the network a :class:`ModelConfig` describes (a
network imported from a BioImage.IO package is its TorchScript archive, see
:mod:`~napari_anatomics.models.zoo_net`);
:func:`plan_architecture` fills in the architecture dict (kernels, strides)
from the voxel size when training starts, so ``config.json`` states exactly
what was built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .unet3d import ResUNet3D, plan_levels
from .zoo_net import TORCHSCRIPT

#: Architecture names training builds (:func:`build_network` also loads TORCHSCRIPT).
ARCHITECTURES = ("resunet3d", "unet2d")


def plan_architecture(
    name: str,
    out_channels: int,
    model_voxel_size: Sequence[float],
    window: Sequence[int],
    *,
    width: int = 16,
    depth: int = 4,
    norm: str = "batch",
    encoder: str = "resnet18",
) -> dict[str, Any]:
    """Architecture dict for :class:`ModelConfig`, with every choice explicit.

    Parameters
    ----------
    name : {"resunet3d", "unet2d"}
        3D residual U-Net (ours) or 2D smp U-Net (slice-wise).
    out_channels : int
        Number of output channels.
    model_voxel_size : sequence of 3 floats
        (z, y, x) voxel size the network sees (after downsampling).
    window : sequence of 3 ints
        (z, y, x) training window at model resolution.
    width, depth : int
        Channels of the top level and number of resolution levels.
    norm : {"batch", "instance", "group"}
        Normalization of the 3D U-Net.
    encoder : str
        smp encoder name of the 2D U-Net (no pretrained weights).

    Returns
    -------
    dict
    """
    arch: dict[str, Any] = {
        "name": name,
        "in_channels": 1,
        "out_channels": int(out_channels),
        "width": int(width),
        "depth": int(depth),
    }
    if name == "resunet3d":
        kernels, strides = plan_levels(model_voxel_size, depth, int(window[0]))
        arch.update(
            spatial_dims=3,
            norm=norm,
            kernels=[list(k) for k in kernels],
            strides=[list(s) for s in strides],
        )
    elif name == "unet2d":
        arch.update(spatial_dims=2, encoder=encoder)
    else:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {name!r}")
    return arch


def network_factor(arch: dict[str, Any]) -> tuple[int, int, int]:
    """Total down-sampling (z, y, x) of a network: windows must be multiples of it."""
    if arch["name"] == "unet2d":
        f = 2 ** int(arch.get("depth", 4))
        return (1, f, f)
    factor = [1, 1, 1]
    for stride in arch["strides"]:
        factor = [a * int(b) for a, b in zip(factor, stride)]
    return tuple(factor)  # type: ignore[return-value]


def build_network(
    config: ModelConfig,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build the (untrained) network a model config describes.

    Parameters
    ----------
    config : ModelConfig
        Its ``architecture`` dict names the network (see :func:`plan_architecture`).
    weights : str or Path, optional
        The TorchScript archive of an imported network (``"name": "torchscript"``),
        which is loaded, not built; unused by the other architectures.
    device : str or torch.device
        Where an imported network is loaded (the others are built on the CPU).

    Returns
    -------
    torch.nn.Module
        3D networks map ``(B, 1, Z, Y, X)`` to logits ``(B, C, Z, Y, X)``;
        2D networks map ``(B, 1, Y, X)`` to ``(B, C, Y, X)``. An imported
        network (:class:`~napari_anatomics.models.zoo_net.ZooNet`) outputs
        probabilities.
    """
    arch = dict(config.architecture)
    arch.setdefault("out_channels", config.out_channels)
    name = arch.get("name")
    if name == TORCHSCRIPT:
        if weights is None:
            raise ValueError(
                "an imported network is its TorchScript archive: load its model folder "
                "(load_model), it cannot be built or trained anew"
            )
        from .zoo_net import load_torchscript

        return load_torchscript(weights, arch, device)
    if name == "unet2d":
        from .smp2d import build_unet2d

        # channels-last: oneDNN's fast layout for 2D convolutions (x1.4 per
        # training step, x1.8 per tile in bfloat16 on these CPUs). The 3D net
        # stays contiguous: channels_last_3d was slower there.
        return build_unet2d(arch).to(memory_format=torch.channels_last)
    if name == "resunet3d":
        if "kernels" not in arch:
            kernels, strides = plan_levels(
                config.model_voxel_size, int(arch.get("depth", 4)), config.window[0]
            )
            arch.update(kernels=kernels, strides=strides)
        return ResUNet3D(
            int(arch.get("in_channels", 1)),
            int(arch["out_channels"]),
            arch["kernels"],
            arch["strides"],
            width=int(arch.get("width", 16)),
            norm=str(arch.get("norm", "batch")),
        )
    raise ValueError(
        f"unknown architecture {name!r} in the model config: expected one of {ARCHITECTURES}"
    )


def run_network(net: nn.Module, batch: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Logits ``(B, C, Z, Y, X)`` of a network for a batch ``(B, 1, Z, Y, X)``.

    Parameters
    ----------
    net : torch.nn.Module
        A network from :func:`build_network`.
    batch : torch.Tensor
        Normalized images, on the network's device.
    spatial_dims : {2, 3}
        2 runs the network slice by slice (the Z slices of every item are
        stacked into one channels-last batch), 3 on the whole batch.

    Returns
    -------
    torch.Tensor
        Logits, same batch, Z, Y and X as the input.
    """
    if spatial_dims != 2:
        return net(batch)
    b, c, z, y, x = batch.shape
    flat = batch.permute(0, 2, 1, 3, 4).reshape(b * z, c, y, x)
    logits = net(flat.contiguous(memory_format=torch.channels_last))
    return logits.reshape(b, z, -1, y, x).permute(0, 2, 1, 3, 4)


__all__ = [
    "ARCHITECTURES",
    "TORCHSCRIPT",
    "ResUNet3D",
    "build_network",
    "network_factor",
    "plan_architecture",
    "run_network",
]
