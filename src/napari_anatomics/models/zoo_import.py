"""Import a BioImage.IO model package into a model folder that Auto-label runs tiled.

:func:`import_model` takes two kinds of package:

* one exported by napari-anatomics (:func:`~.bioimageio.export_model`; our
  config travels in ``config.napari_anatomics``): its network is rebuilt and its
  ``pytorch_state_dict`` weights loaded with ``weights_only=True``;
* one made by another tool whose tensors fit (one 2D or 3D grey-value input, one
  output of semantic or foreground/boundary probabilities, see
  :mod:`~.zoo_spec`): its TorchScript archive is copied into the folder and run
  with ``torch.jit.load`` (:mod:`~.zoo_net`). Its Python source never runs and
  nothing is unpickled, so a package without TorchScript weights is refused.

Either way the imported network must give the package's own test output on its
test input before the folder is written; a package that does not fit is
refused in one line naming what and what to do.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.numerics import non_finite_tensors
from . import build_network
from .bioimageio import CONFIG_KEY, PackageError, _spec
from .config import ModelConfig, normalize, resolve_normalization
from .packaged_net import ProbabilityNet
from .store import WEIGHTS_NAME, TrainedModel, save_model, save_torchscript
from .zoo_net import ZooNet
from .zoo_spec import zoo_config

#: Weight formats of the spec, for saying which ones a package has.
WEIGHT_FORMATS = (
    "pytorch_state_dict",
    "torchscript",
    "onnx",
    "keras_hdf5",
    "keras_v3",
    "tensorflow_saved_model_bundle",
    "tensorflow_js",
)


def import_model(package: str | Path, model_dir: str | Path) -> Path:
    """Turn a BioImage.IO package into a model folder.

    Parameters
    ----------
    package : str or Path
        A package (.zip) or its ``rdf.yaml``.
    model_dir : str or Path
        The model folder to create; it must not hold a model already.

    Returns
    -------
    Path
        The model folder, ready for ``anatomics predict`` and Auto-label.

    Raises
    ------
    PackageError
        When the package is invalid, does not fit (several inputs or outputs,
        several input channels, no TorchScript weights for a network made
        elsewhere, processing we cannot repeat on tiles...), or its weights do
        not reproduce its own test output.
    """
    _spec()
    from bioimageio.spec import load_model_description

    package, model_dir = Path(package), Path(model_dir)
    if not package.exists():
        raise PackageError(f"{package}: no such file; give the package .zip or its rdf.yaml")
    try:
        descr = load_model_description(package, perform_io_checks=False)
    except Exception as err:  # any invalid package gets one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PackageError(f"{package}: not a valid BioImage.IO model package ({first})") from None
    if not hasattr(descr, "inputs"):  # a valid description of something else
        raise PackageError(f"{package}: describes a {descr.type}, not a model")
    extra = dict(descr.config.model_extra or {}) if hasattr(descr, "config") else {}
    if CONFIG_KEY in extra:
        config = ModelConfig.from_dict(dict(extra[CONFIG_KEY]))
        return _import_ours(package, descr, config, model_dir)
    return _import_foreign(package, descr, model_dir)


def _import_ours(package: Path, descr: Any, config: ModelConfig, model_dir: Path) -> Path:
    """Rebuild our network and load its state dict (tensors only)."""
    entry = descr.weights.pytorch_state_dict
    if entry is None:
        raise PackageError(f"{package}: has no pytorch_state_dict weights to load")
    with tempfile.TemporaryDirectory(prefix="anatomics-import-") as tmp:
        local = Path(tmp) / WEIGHTS_NAME
        local.write_bytes(_read(package, entry))
        state = torch.load(local, map_location="cpu", weights_only=True)
    net = build_network(config)
    try:
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    except RuntimeError as err:
        raise PackageError(
            f"{package}: its weights do not fit the network its config describes ({err})"
        ) from None
    model = TrainedModel(net.eval(), config, torch.device("cpu"))
    raw = _tensor(package, descr.inputs[0])
    with torch.no_grad():
        got = ProbabilityNet(model)(torch.from_numpy(normalize(raw, config.normalization)))
    _check_reproduces(package, got.numpy(), _tensor(package, descr.outputs[0]))
    _check_new(model_dir)
    return save_model(model_dir, net, config)


def _import_foreign(package: Path, descr: Any, model_dir: Path) -> Path:
    """Copy a fitting package's TorchScript archive into a model folder."""
    try:
        config, threshold = zoo_config(descr)
    except PackageError as err:
        raise PackageError(f"{package}: {err}") from None
    entry = descr.weights.torchscript
    if entry is None:
        have = [f for f in WEIGHT_FORMATS if getattr(descr.weights, f, None) is not None]
        raise PackageError(
            f"{package}: '{descr.name}' has no TorchScript weights ({', '.join(have)} only); "
            "napari-anatomics runs a network made elsewhere only as TorchScript, never its "
            "Python source or pickled weights: ask its authors for TorchScript weights"
        )
    archive = _read(package, entry)
    with tempfile.TemporaryDirectory(prefix="anatomics-import-") as tmp:
        local = Path(tmp) / WEIGHTS_NAME
        local.write_bytes(archive)
        try:
            net = build_network(config, local)
        except ValueError as err:
            raise PackageError(f"{package}: its TorchScript weights: {err}") from None
    broken = non_finite_tensors(net.state_dict())
    if broken:
        raise PackageError(f"{package}: its weights hold NaN or inf ({broken[0]}, ...)")
    _check_foreign(package, descr, net, config, threshold)
    _check_new(model_dir)
    return save_torchscript(model_dir, archive, config)


def _check_foreign(
    package: Path, descr: Any, net: ZooNet, config: ModelConfig, threshold: Any
) -> None:
    """The imported network, with our normalization, gives the package's test output."""
    raw, expected = _tensor(package, descr.inputs[0]), _tensor(package, descr.outputs[0])
    if threshold is None and (expected.min() < -1e-3 or expected.max() > 1 + 1e-3):
        raise PackageError(
            f"{package}: its output is not probabilities (its test output spans "
            f"{expected.min():.3g}..{expected.max():.3g} and it has no sigmoid or softmax "
            "postprocessing): napari-anatomics needs probabilities in [0, 1]"
        )
    # A per-sample normalization is computed on the test input, as bioimageio.core does.
    norm = resolve_normalization(config.normalization, np.asarray(raw).reshape(1, 1, -1))
    try:
        with torch.no_grad():
            got = net.package_forward(torch.from_numpy(normalize(raw, norm))).float().numpy()
    except Exception as err:  # a TorchScript error: its text is long, its first line says it
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise PackageError(
            f"{package}: its TorchScript network fails on its own test input ({first})"
        ) from None
    if threshold is not None:
        axes = config.architecture["output_axes"]
        shape = [-1 if a == "channel" else 1 for a in axes] if np.ndim(threshold) else []
        got = (got > np.reshape(np.asarray(threshold, dtype=np.float32), shape)).astype(
            np.float32
        )
    _check_reproduces(package, got, expected, binary=threshold is not None)


def _check_reproduces(
    package: Path, got: np.ndarray, expected: np.ndarray, binary: bool = False
) -> None:
    """Refuse a package whose network does not give its own test output."""
    if got.shape == expected.shape:
        if binary and np.mean(got != expected) <= 1e-3:  # a few voxels at the threshold
            return
        if not binary and np.allclose(got, expected, atol=1e-3):
            return
    raise PackageError(
        f"{package}: its weights do not reproduce its own test output; the package is "
        "damaged or was edited: export or download it again"
    )


def _check_new(model_dir: Path) -> None:
    if (model_dir / WEIGHTS_NAME).exists():
        raise PackageError(f"{model_dir} already holds a model: choose another folder")


def _tensor(package: Path, node: Any) -> np.ndarray:
    return np.load(io.BytesIO(_read(package, node.test_tensor)), allow_pickle=False)


def _read(package: Path, file: Any) -> bytes:
    """The bytes of a file in the package, checked against its recorded SHA256."""
    try:
        return file.get_reader().read()
    except ValueError as err:  # bioimageio.spec: "SHA256 mismatch for ..."
        raise PackageError(
            f"{package}: {str(err).splitlines()[0]}: the package is damaged or was edited; "
            "export or download it again"
        ) from None
