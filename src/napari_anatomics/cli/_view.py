"""``anatomics view``: a stack and its labels in a local Neuroglancer viewer."""

from __future__ import annotations

import argparse
import threading
import webbrowser

from ._common import add_voxel_size, run_with_bar


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``view`` subcommand."""
    p = sub.add_parser(
        "view",
        help="show a stack and its labels in Neuroglancer (lazily, in your browser)",
        description="Serve a stack and its labels to a local Neuroglancer viewer and print "
        "the link: chunks are read on demand (zarr, OME-Zarr, tif, h5), so stacks of any "
        "size open at once. Each object's volume (µm³) and class show on hover and in the "
        "layer's segment list. Runs until Ctrl-C. Needs: pip install "
        "'napari-anatomics[neuroglancer]'.",
    )
    p.add_argument("image", help="grey-level stack")
    p.add_argument("labels", nargs="*", help="labels stacks of the same size (0 = background)")
    p.add_argument(
        "--stats",
        action="append",
        metavar="CSV",
        help="stats table of each labels stack (anatomics stats), in order; measured "
        "here when not given",
    )
    p.add_argument("--no-measure", action="store_true", help="do not measure the objects")
    p.add_argument("--bind", default="127.0.0.1", help="address (0.0.0.0 shares the view)")
    p.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    p.add_argument("--open", action="store_true", help="open the link in the web browser")
    add_voxel_size(p)
    p.set_defaults(func=_view)


def _view(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..analyze.measure import measure_job
    from ..io.read import open_volume, require_3d, require_labels
    from ..tasks.view import serve

    image = require_3d(open_volume(args.image, voxel_size=args.voxel_size))
    labels = [
        require_labels(open_volume(path, voxel_size=args.voxel_size or image.voxel_size))
        for path in args.labels
    ]
    stats = list(args.stats or [])
    if len(stats) > len(labels):
        raise ValueError(f"{len(stats)} --stats tables for {len(labels)} labels stacks")
    tables = []
    for i, volume in enumerate(labels):
        if i < len(stats):
            tables.append(pd.read_csv(stats[i]))
        elif args.no_measure:
            tables.append(None)
        else:
            job = measure_job(volume, surface=False)
            tables.append(run_with_bar(job, f"measure {volume.name}"))
    view = serve(image, labels, tables, bind=args.bind, port=args.port)
    print(f"Neuroglancer: {view.url}  (layers: {', '.join(view.layers)}; Ctrl-C to stop)")
    if args.open:
        webbrowser.open(view.url)
    try:
        serve_forever()
    finally:
        view.close()
    return 0


def serve_forever() -> None:
    """Block until Ctrl-C while the viewer's threads serve."""
    threading.Event().wait()
