"""napari sample data: the bundled SBFSEM chloroplast crop and a synthetic volume."""

from __future__ import annotations

from ..core.volume import Volume
from ..io.samples import SAMPLE_CREDIT, load_sample, synthetic_sbfsem
from .layers import LayerData, volume_layer_data

#: Size (z, y, x) of the synthetic sample.
SYNTHETIC_SHAPE = (32, 256, 256)


def chloroplast_sample() -> list[LayerData]:
    """The bundled real SBFSEM crop: image and instance labels, 40 nm voxels."""
    image, labels = load_sample()
    layers = [volume_layer_data(image, "image"), volume_layer_data(labels, "labels")]
    for _, meta, _ in layers:
        meta["metadata"]["credit"] = SAMPLE_CREDIT
    return layers


def synthetic_sample() -> list[LayerData]:
    """A synthetic SBFSEM-like volume (32 x 256 x 256) with its exact labels."""
    synthetic = synthetic_sbfsem(SYNTHETIC_SHAPE, n_objects=24, seed=0)
    image = Volume(synthetic.image, synthetic.voxel_size, "user", None, "synthetic image")
    labels = Volume(synthetic.labels, synthetic.voxel_size, "user", None, "synthetic labels")
    layers = [volume_layer_data(image, "image"), volume_layer_data(labels, "labels")]
    for _, meta, _ in layers:
        meta["metadata"]["credit"] = (
            "synthetic: napari_anatomics.io.samples.synthetic_sbfsem, seed 0"
        )
    return layers
