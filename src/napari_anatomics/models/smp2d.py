"""2D networks (Semantic2D / Instance2D) from segmentation-models-pytorch.

The encoders are built with ``encoder_weights=None``: nothing is downloaded at
run time; training starts from random weights (or from an earlier model with
``init_from``). 2D models see one slice at a time: their window has z = 1 and
:class:`~napari_anatomics.models.store.TrainedModel` runs them slice by slice.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def build_unet2d(arch: dict[str, Any]) -> nn.Module:
    """A segmentation-models-pytorch U-Net from an architecture dict.

    Parameters
    ----------
    arch : dict
        ``in_channels``, ``out_channels`` and optionally ``encoder``
        (default ``"resnet18"``), ``depth`` (encoder depth 3-5, default 4) and
        ``width`` (channels of the top decoder stage, default 16).

    Returns
    -------
    torch.nn.Module
        Maps ``(B, in, Y, X)`` to logits ``(B, out, Y, X)``; Y and X must be
        multiples of ``2 ** depth``.
    """
    import segmentation_models_pytorch as smp

    depth = int(arch.get("depth", 4))
    if not 3 <= depth <= 5:
        raise ValueError(f"2D encoder depth must be 3, 4 or 5, not {depth}")
    width = int(arch.get("width", 16))
    decoder = tuple(width * 2 ** (depth - 1 - i) for i in range(depth))
    return smp.Unet(
        encoder_name=str(arch.get("encoder", "resnet18")),
        encoder_weights=None,
        encoder_depth=depth,
        decoder_channels=decoder,
        in_channels=int(arch["in_channels"]),
        classes=int(arch["out_channels"]),
    )
