"""Models as BioImage.IO packages: export a model folder, import a package back.

:func:`export_model` writes a model folder as a BioImage.IO model package
(``bioimageio.spec`` 0.5, a .zip): weights as ``pytorch_state_dict`` with the
network's source file, and TorchScript when the network traces; a test input
and the model's output on it; axes with their voxel size in nm; the model's
normalization as ``fixed_zero_mean_unit_variance`` preprocessing; authors,
licence and citation; a model card (README) with how the model was trained and
scored. Our own config travels in ``config.napari_anatomics``.

The packaged network outputs probabilities (softmax over classes for semantic
models, sigmoid per channel for instance models), at model resolution: the
input axes' scale says which voxel size the network expects.

:func:`~napari_anatomics.models.zoo_import.import_model` turns such a package
(or one made by another tool, when its tensors fit) back into a model folder
that Auto-label runs tiled over a big stack. A model imported from another
tool's package is not exported again: share that package.
"""

from __future__ import annotations

import json
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import TORCHSCRIPT, network_factor, unet3d
from .config import ModelConfig, normalize
from .packaged_net import ProbabilityNet, network_source, trace
from .store import load_model

#: The key of our model config inside a package's ``config``.
CONFIG_KEY = "napari_anatomics"
DEFAULT_LICENSE = "CC-BY-4.0"
DEFAULT_CITE = (
    "napari-anatomics: segment and quantify organelles in volume EM",
    "https://pypi.org/project/napari-anatomics/",
)


class PackageError(ValueError):
    """A BioImage.IO package cannot be used; the message says why and what to do."""


def _spec() -> Any:
    """``bioimageio.spec.model.v0_5``, or one line saying how to install it."""
    try:
        import bioimageio.spec.model.v0_5 as spec
    except ImportError:
        raise ImportError(
            "BioImage.IO packages need bioimageio.spec and bioimageio.core: "
            "pip install 'napari-anatomics[bioimageio]'"
        ) from None
    return spec


def _architecture(config: ModelConfig) -> dict[str, Any]:
    """The architecture dict with everything ``build`` needs (planned kernels included)."""
    arch = json.loads(json.dumps(config.architecture))
    arch.setdefault("out_channels", config.out_channels)
    if arch.get("name") == "resunet3d" and "kernels" not in arch:
        depth, window_z = int(arch.get("depth", 4)), config.window[0]
        kernels, strides = unet3d.plan_levels(config.model_voxel_size, depth, window_z)
        arch.update(kernels=[list(k) for k in kernels], strides=[list(s) for s in strides])
    return arch


def _axes(spec: Any, config: ModelConfig, which: str, factor: Sequence[int]) -> list:
    """Batch, channel and space axes, the space axes scaled in nm at model resolution."""
    voxel = config.model_voxel_size
    names = ("z", "y", "x")[3 - config.spatial_dims :]
    voxel = voxel[3 - config.spatial_dims :]
    factor = tuple(factor)[3 - config.spatial_dims :]
    axes: list = [spec.BatchAxis()]
    if which == "input":
        axes.append(spec.ChannelAxis(channel_names=[spec.Identifier("raw")]))
        for name, size, step in zip(names, voxel, factor):
            axes.append(
                spec.SpaceInputAxis(
                    id=spec.AxisId(name),
                    size=spec.ParameterizedSize(min=int(step), step=int(step)),
                    scale=float(size),
                    unit="nanometer",
                )
            )
    else:
        channels = [spec.Identifier(t) for t in config.targets]
        axes.append(spec.ChannelAxis(channel_names=channels))
        for name, size in zip(names, voxel):
            ref = spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(name))
            axis = spec.SpaceOutputAxis(
                id=spec.AxisId(name), size=ref, scale=float(size), unit="nanometer"
            )
            axes.append(axis)
    return axes


def _test_input(config: ModelConfig, sample: np.ndarray | None) -> np.ndarray:
    """A raw test input at model resolution, one window: from ``sample`` or seeded noise."""
    window = list(config.window)
    if sample is None:
        rng = np.random.default_rng(0)
        mean = config.normalization.get("mean", 128.0)
        std = config.normalization.get("std", 40.0)
        block = np.round(np.clip(rng.normal(mean, std, window), 0, 255))
    else:
        step = config.downsample
        reduced = np.asarray(sample)[:: step[0], :: step[1], :: step[2]]
        if any(r < w for r, w in zip(reduced.shape, window)):
            raise PackageError(
                f"the sample {reduced.shape} (at model resolution) is smaller than the "
                f"model's window {tuple(window)}: give a larger sample image"
            )
        starts = [(r - w) // 2 for r, w in zip(reduced.shape, window)]
        block = reduced[tuple(slice(s, s + w) for s, w in zip(starts, window))]
    block = block[None, None].astype(np.float32)  # batch, channel; raw grey values
    return block[:, :, 0] if config.spatial_dims == 2 else block


def centre_sample(data: Any, config: ModelConfig) -> np.ndarray:
    """The middle block of a stack, big enough for one window at model resolution.

    Cut from a (lazy) full-resolution stack for :func:`export_model`'s ``sample``:
    only the block is read.
    """
    need = [w * f for w, f in zip(config.window, config.downsample)]
    starts = [max(0, (s - n) // 2) for s, n in zip(data.shape, need)]
    return np.asarray(data[tuple(slice(a, a + n) for a, n in zip(starts, need))])


def _model_card(config: ModelConfig) -> str:
    mean, std = config.normalization.get("mean"), config.normalization.get("std")
    validation = ", ".join(f"{k} {v}" for k, v in config.validation.items()) or "not recorded"
    return textwrap.dedent(f"""\
        # {config.name or "napari-anatomics model"}

        A {config.task} segmentation model for volume electron microscopy, trained with
        napari-anatomics ({config.architecture.get("name")}, {config.spatial_dims}D).

        - Output channels: {", ".join(config.targets)} (probabilities).
        - Classes: {", ".join(config.classes)}.
        - Voxel size of the training data (z, y, x nm): {tuple(config.voxel_size)};
          the network sees it reduced by {tuple(config.downsample)}.
        - Normalization: (x - {mean}) / {std}.
        - Trained for {config.iterations} iterations on {config.data.get("image", "?")}.
        - Held-out scores on the painted data: {validation}.

        Run it tiled over a whole stack with `anatomics import-model` then `anatomics predict`.
        """)


def export_model(
    model_dir: str | Path,
    out: str | Path,
    *,
    authors: Sequence[str] = ("napari-anatomics user",),
    license: str = DEFAULT_LICENSE,
    cite: tuple[str, str] = DEFAULT_CITE,
    sample: np.ndarray | None = None,
    torchscript: bool = True,
) -> Path:
    """Write a model folder as a BioImage.IO model package (.zip).

    Parameters
    ----------
    model_dir : str or Path
        A model folder written by training.
    out : str or Path
        The package to write (``.zip``); written to a temporary name and renamed.
    authors : sequence of str
        Author names.
    license : str
        SPDX licence id of the weights.
    cite : (str, str)
        Citation text and URL (or ``doi:...``).
    sample : ndarray, optional
        Raw (z, y, x) image at full resolution the test tensors are cut from; seeded
        noise with the model's grey-value statistics when not given.
    torchscript : bool
        Add TorchScript weights when the network traces.

    Returns
    -------
    Path
        The package written.
    """
    spec = _spec()
    from bioimageio.spec import save_bioimageio_package

    model = load_model(model_dir, device="cpu")
    config = model.config
    if config.architecture.get("name") == TORCHSCRIPT:
        raise PackageError(
            f"{model_dir} was imported from a BioImage.IO package made elsewhere "
            f"({config.data.get('package', '?')}): share that package instead"
        )
    out = Path(out)
    arch = _architecture(config)
    factor = network_factor(arch)
    with tempfile.TemporaryDirectory(prefix="anatomics-export-") as tmp:
        tmp = Path(tmp)
        raw = _test_input(config, sample)
        wrapped = ProbabilityNet(model)
        with torch.no_grad():
            probs = wrapped(torch.from_numpy(normalize(raw, config.normalization))).numpy()
        np.save(tmp / "test_input.npy", raw)
        np.save(tmp / "test_output.npy", probs.astype(np.float32))
        (tmp / "network.py").write_text(network_source(config))
        state = {f"net.{k}": v for k, v in model.net.state_dict().items()}
        torch.save(state, tmp / "weights.pt")
        (tmp / "README.md").write_text(_model_card(config))
        version = spec.Version(torch.__version__.split("+")[0])
        weights = {
            "pytorch_state_dict": spec.PytorchStateDictWeightsDescr(
                source=tmp / "weights.pt",
                architecture=spec.ArchitectureFromFileDescr(
                    source=tmp / "network.py",
                    callable=spec.Identifier("AnatomicsNetwork"),
                    kwargs={"task": config.task, "architecture": arch},
                ),
                pytorch_version=version,
            )
        }
        if torchscript and trace(wrapped, raw, probs, tmp / "weights.torchscript.pt"):
            weights["torchscript"] = spec.TorchscriptWeightsDescr(
                source=tmp / "weights.torchscript.pt",
                pytorch_version=version,
                parent="pytorch_state_dict",
            )
        norm = config.normalization
        descr = spec.ModelDescr(
            name=_package_name(config),
            description=f"{config.task} segmentation of {', '.join(config.classes)} in volume EM",
            authors=[spec.Author(name=a) for a in authors],
            cite=[_cite(spec, *cite)],
            license=license,
            documentation=spec.FileDescr(source=tmp / "README.md"),
            tags=["electron-microscopy", "segmentation", f"{config.spatial_dims}d", config.task],
            inputs=[
                spec.InputTensorDescr(
                    id=spec.TensorId("raw"),
                    axes=_axes(spec, config, "input", factor),
                    test_tensor=spec.FileDescr(source=tmp / "test_input.npy"),
                    data=spec.IntervalOrRatioDataDescr(type="float32"),
                    preprocessing=[
                        spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32")),
                        spec.FixedZeroMeanUnitVarianceDescr(
                            kwargs=spec.FixedZeroMeanUnitVarianceKwargs(
                                mean=float(norm.get("mean", 0.0)),
                                std=max(float(norm.get("std", 1.0)), 1e-6),
                            )
                        ),
                    ],
                )
            ],
            outputs=[
                spec.OutputTensorDescr(
                    id=spec.TensorId("probabilities"),
                    axes=_axes(spec, config, "output", factor),
                    test_tensor=spec.FileDescr(source=tmp / "test_output.npy"),
                    data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
                )
            ],
            weights=spec.WeightsDescr(**weights),
            config=spec.Config(**{CONFIG_KEY: _config_record(config)}),
        )
        partial = out.with_name(out.name + ".partial")
        save_bioimageio_package(descr, output_path=partial)
        partial.replace(out)
    return out


def _cite(spec: Any, text: str, where: str) -> Any:
    if where.startswith("doi:"):
        return spec.CiteEntry(text=text, doi=spec.Doi(where[4:]))
    return spec.CiteEntry(text=text, url=where)


def _package_name(config: ModelConfig) -> str:
    """The folder's name, in the characters (and the 5-128 length) the spec allows."""
    name = config.name or f"anatomics {config.task} model"
    allowed = " ".join("".join(c if c.isalnum() or c in " _-()+." else " " for c in name).split())
    if len(allowed) < 5:
        allowed = f"{allowed} (napari-anatomics {config.task} model)".strip()
    return allowed[:128]


def _config_record(config: ModelConfig) -> dict[str, Any]:
    return json.loads(json.dumps(config.to_dict()))
