"""A residual 3D U-Net for anisotropic volume EM.

The voxel size decides the shape of each level: while z is at least twice as
coarse as x/y, a level uses in-plane ``(1, 3, 3)`` kernels and pools x/y only
``(1, 2, 2)``; once the spacing is about isotropic, levels use ``(3, 3, 3)``
kernels and ``(2, 2, 2)`` pooling (as nnU-Net / DynUNet plan anisotropic data).

CPU step time (forward + backward + optimizer step, window 8 x 128 x 128 at
40 nm isotropic, width 16, depth 4, 2 AVX2 cores, torch 2.14, measured with
``benchmarks/unet_step_time.py`` on the shared machine while it was quiet;
wall-clock, +-20 %):

============================  ======  =====  ======  ==========
model                         params  batch  s/step  slow convs
============================  ======  =====  ======  ==========
ResUNet3D (this), BatchNorm   1.72M   1      3.09    43
ResUNet3D (this), BatchNorm   1.72M   2      0.70    0
ResUNet3D, InstanceNorm       1.72M   2      0.65    0
MONAI DynUNet, same plan      1.38M   1      1.51    39
MONAI DynUNet, same plan      1.38M   2      0.62    0
MONAI BasicUNet (z 16)        1.44M   2      1.51    0
============================  ======  =====  ======  ==========

Layer shapes decide the speed on the CPU: PyTorch sends a 3D convolution to
oneDNN only when the batch is larger than one or ``N*C*D*H`` exceeds 20480;
the others fall back to ``slow_conv3d``, 4x slower here. Training therefore
uses batches of two or more, and prediction should too. BasicUNet pools z
four times (needs 16+ slices, twice the voxels per step). DynUNet with the
same anisotropic plan is as fast as this network; this one is kept because it
needs no MONAI at run time and exposes the plan in ``config.json``. On a busy
machine (load 7 on 2 cores) one thread beat two by 3-5x in wall time, see
:func:`napari_anatomics.train.loop.cpu_threads`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Triple = tuple[int, int, int]


def plan_levels(
    voxel_size: Sequence[float], depth: int, window_z: int | None = None
) -> tuple[list[Triple], list[Triple]]:
    """Kernel sizes and pooling strides per level from the voxel size.

    Parameters
    ----------
    voxel_size : sequence of 3 floats
        (z, y, x) spacing the network sees (after downsampling), any unit.
    depth : int
        Number of resolution levels (``depth - 1`` poolings).
    window_z : int, optional
        Window depth in voxels; z is not pooled below 2 voxels.

    Returns
    -------
    kernels : list of (int, int, int)
        Convolution kernel of each level (``depth`` entries).
    strides : list of (int, int, int)
        Pooling factor between consecutive levels (``depth - 1`` entries).
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    spacing = [float(v) for v in voxel_size]
    z_left = window_z if window_z is not None else 1 << 30
    kernels: list[Triple] = []
    strides: list[Triple] = []
    for level in range(depth):
        flat = spacing[0] >= 2.0 * min(spacing[1], spacing[2])
        kernels.append((1, 3, 3) if flat else (3, 3, 3))
        if level == depth - 1:
            break
        pool_z = 1 if flat or z_left < 4 else 2
        strides.append((pool_z, 2, 2))
        spacing = [spacing[0] * pool_z, spacing[1] * 2, spacing[2] * 2]
        z_left //= pool_z
    return kernels, strides


def _pad(kernel: Triple) -> Triple:
    return tuple(k // 2 for k in kernel)  # type: ignore[return-value]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be 'batch', 'instance' or 'group', not {kind!r}")


class ResBlock(nn.Module):
    """Two convolutions with a residual connection (1x1 projection if needed)."""

    def __init__(self, cin: int, cout: int, kernel: Triple, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, kernel, padding=_pad(kernel), bias=False)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv3d(cout, cout, kernel, padding=_pad(kernel), bias=False)
        self.norm2 = _norm(norm, cout)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.skip = (
            nn.Identity()
            if cin == cout
            else nn.Sequential(nn.Conv3d(cin, cout, 1, bias=False), _norm(norm, cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward pass."""
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.skip(x))


class ResUNet3D(nn.Module):
    """Residual 3D U-Net with per-level kernels and pooling strides.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    kernels : list of (int, int, int)
        Kernel of each level, top first (see :func:`plan_levels`).
    strides : list of (int, int, int)
        Down-sampling factor between levels (``len(kernels) - 1`` entries).
    width : int
        Channels at the top level; doubled at each level below, capped at
        ``8 * width``.
    norm : {"batch", "instance", "group"}
        Normalization layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernels: Sequence[Sequence[int]],
        strides: Sequence[Sequence[int]],
        width: int = 16,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        kernels = [tuple(int(v) for v in k) for k in kernels]
        strides = [tuple(int(v) for v in s) for s in strides]
        if len(strides) != len(kernels) - 1:
            raise ValueError("need one stride between each pair of levels")
        chans = [min(width * 2**i, width * 8) for i in range(len(kernels))]
        self.strides = strides
        self.stem = ResBlock(in_channels, chans[0], kernels[0], norm)
        self.down = nn.ModuleList()
        self.encoders = nn.ModuleList()
        for i, stride in enumerate(strides):
            # Strided conv down-sampling: one oneDNN conv instead of pooling.
            self.down.append(
                nn.Sequential(
                    nn.Conv3d(chans[i], chans[i + 1], stride, stride=stride, bias=False),
                    _norm(norm, chans[i + 1]),
                    nn.LeakyReLU(0.01, inplace=True),
                )
            )
            self.encoders.append(ResBlock(chans[i + 1], chans[i + 1], kernels[i + 1], norm))
        self.up = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(strides))):
            self.up.append(
                nn.ConvTranspose3d(chans[i + 1], chans[i], strides[i], stride=strides[i])
            )
            self.decoders.append(ResBlock(2 * chans[i], chans[i], kernels[i], norm))
        self.head = nn.Conv3d(chans[0], out_channels, 1)

    @property
    def factor(self) -> Triple:
        """Total down-sampling (z, y, x): windows must be multiples of it."""
        f = [1, 1, 1]
        for s in self.strides:
            f = [a * b for a, b in zip(f, s)]
        return tuple(f)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, Z, Y, X)`` for a ``(B, in, Z, Y, X)`` batch."""
        x = self.stem(x)
        skips = [x]
        for down, enc in zip(self.down, self.encoders):
            x = enc(down(x))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.decoders):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
