"""``anatomics export-model`` and ``import-model``: models as BioImage.IO packages."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.outputs import check_new_file


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export-model`` and ``import-model`` subcommands."""
    e = sub.add_parser(
        "export-model",
        help="write a model folder as a BioImage.IO model package (.zip)",
        description=(
            "Write a trained model as a BioImage.IO model package (spec 0.5): weights "
            "(state dict and TorchScript), test tensors, axes in nm, normalization, "
            "authors, licence and citation. Needs: pip install 'napari-anatomics[bioimageio]'."
        ),
    )
    e.add_argument("model", help="model folder written by anatomics train")
    e.add_argument("out", help="package to write (.zip)")
    e.add_argument(
        "--author", action="append", help="an author's name (repeat for several; default: you)"
    )
    e.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id (default CC-BY-4.0)")
    e.add_argument("--cite", help="citation text (default: napari-anatomics)")
    e.add_argument("--cite-url", help="citation URL, or doi:10.xxx/yyy")
    e.add_argument(
        "--sample", help="image stack to cut the test input from (default: the training image)"
    )
    e.add_argument("--overwrite", action="store_true", help="replace an existing package")
    e.set_defaults(func=_export)
    i = sub.add_parser(
        "import-model",
        help="turn a BioImage.IO model package into a model folder",
        description=(
            "Turn a BioImage.IO model package (spec 0.5) into a model folder that "
            "anatomics predict and Auto-label run tiled: one exported by napari-anatomics, "
            "or one made elsewhere whose tensors fit (one 2D or 3D grey-value input, one "
            "output of class or foreground/boundary probabilities) with TorchScript "
            "weights. Nothing in a package is unpickled and none of its Python runs; "
            "the imported network must give the package's own test output."
        ),
    )
    i.add_argument("package", help="the package (.zip) or its rdf.yaml")
    i.add_argument("out", help="model folder to create")
    i.set_defaults(func=_import)


def _export(args: argparse.Namespace) -> int:
    from ..io.read import open_volume
    from ..models.bioimageio import DEFAULT_CITE, centre_sample, export_model
    from ..models.config import ModelConfig

    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        raise ValueError(f"{out}: a BioImage.IO package is a .zip file; name it {out.stem}.zip")
    check_new_file(out, overwrite=args.overwrite, option="OUT", example="model.zip")
    config = ModelConfig.load(args.model)
    source = args.sample or config.data.get("image")
    sample = None
    if source and Path(str(source).split(":")[0]).exists():
        volume = open_volume(source)
        sample = centre_sample(volume.data, config)
    cite = (args.cite or DEFAULT_CITE[0], args.cite_url or DEFAULT_CITE[1])
    written = export_model(
        args.model,
        out,
        authors=args.author or ["napari-anatomics user"],
        license=args.license,
        cite=cite,
        sample=sample,
    )
    print(f"wrote {written}" + ("" if sample is not None else " (test input: seeded noise)"))
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..models.config import ModelConfig, per_stack
    from ..models.zoo_import import import_model

    folder = import_model(args.package, args.out)
    config = ModelConfig.load(folder)
    print(
        f"model folder {folder} ({config.task}: {', '.join(config.targets)}; window "
        f"{','.join(map(str, config.window))}"
        + ("; normalized per stack" if per_stack(config.normalization) else "")
        + f"): run it with anatomics predict {folder} IMAGES --out OUT.zarr"
    )
    return 0
