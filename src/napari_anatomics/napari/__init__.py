"""The napari side: reader and writers, sample data, and thin panels over the headless core."""

import sys

# Keep torch from loading triton in the napari process: loading triton's bundled LLVM
# after the OpenGL driver's (Mesa's llvmpipe, e.g. under Xvfb or without a GPU driver)
# crashes the viewer (segmentation fault) the first time torch._dynamo is imported
# (an optimizer, or torchvision under segmentation-models-pytorch). Training and
# prediction never compile kernels, so nothing is lost. Done here, on the import of
# anything napari-side (reader, panels, commands), not only when a torch panel opens.
sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
