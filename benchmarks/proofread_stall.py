"""Event-loop stall of the Proofread panel's delete / merge / split on a 1 GiB zarr labels layer.

Run::

    QT_QPA_PLATFORM=offscreen python benchmarks/proofread_stall.py            # 1 GiB, temp dir
    QT_QPA_PLATFORM=offscreen python benchmarks/proofread_stall.py --dir /tmp/stall --keep

It writes a uint32 (64, 2048, 2048) labels array (1 GiB) into a zarr group as Auto-label
does (``labels``, chunks :data:`~napari_anatomics.core.blocks.DEFAULT_CHUNKS`), one z-slab
at a time (< 1 GB of memory): chloroplast-like ellipsoids from 8 x 60 x 60 to 20 x 200 x 200
voxels and pairs of touching lobes sharing one id (to split), most of them across chunk
borders. It opens the array as Auto-label shows its result (``viewer.add_labels`` of a
:class:`~napari_anatomics.core.chunkcache.CachedArray` over the ``zarr.Array``, not a copy in
memory) in a ``napari.Viewer(show=False)``, lets the Proofread panel measure it, and drives the
panel's own actions: delete by its double-click handler, merge of two selected table rows
(:meth:`EditTools.merge_selected`), split from two seed points (:meth:`EditTools.split`), then
Ctrl+Z (:meth:`ProofreadWidget.undo`) and redo, and undo again so the labels end as they were
written. Then the same with the ``zarr.Array`` itself in the layer (the baseline: the previous
release, where edits ran on the GUI thread; ``--no-baseline`` skips it).

A ``QTimer`` ticks every 5 ms; an action's **stall** is the longest gap between ticks from the
action's start until the panel is idle again (the edit in the layer and its undo history, the
table measured again), whichever thread did the work; **shown** is the time until the edit is
in the layer (the panel's ``edited`` signal), **table** until the table is measured again.
Offscreen the canvas is not drawn; ``--show`` under ``xvfb-run`` draws it (Mesa's software GL).
The target is 100 ms.

Results of 2026-12-01 (zarr 3.1, napari 0.9.2, numba 0.68; 1 GiB uint32, 224 objects; 3
objects per action; 2 CPU cores; ms). Each object's stall (max of undo and redo over the 3).

=====================  ===============  ===============  ===========  =========  ====  ======
run                    delete           merge            split        undo max   redo  target
=====================  ===============  ===============  ===========  =========  ====  ======
baseline (zarr.Array)  154, 383, 264    122, 251, 192    248, 559,    210        1420  100
                                        then 1.7-2 s     437
cached, first try (1)  2132, 2192, 2186 2304, 2209, 2230 184, 179,    201        234   100
                                                         171
cached (2)             69, 92, 90       60, 54, 46       117, 80, 78  41         50    100
cached (3)             53, 59, 65       64, 41, 55       40, 29, 27   82         55    100
cached, --show (3)     87, 70, 70       40, 65, 40       57, 50, 52   62         178   100
--show --diagnose (4)  31, 52, 66       55, 35, 44       26, 26, 29   41         29    100
same, again            39, 35, 60       39, 55, 41       28, 28, 31   46         26    100
same, again            43, 61, 41       41, 41, 25       25, 32, 24   62         51    100
=====================  ===============  ===============  ===========  =========  ====  ======

(1) Edits in a worker, but the table showed again item by item (a ``QTableWidget`` with columns
sized to their contents: 2.2 s for 224 rows), and each update hashed the labels to name a dask
array (``layer_volume``): the same ~2 s gaps the baseline has after a merge. Now a
``QTableView`` over a DataFrame model, ``da.from_array(..., name=False)``, and no napari activity
bar for the re-measure of a few objects (0.17 s to add one). (2) A split still took 2.7-3.8 s
to show: it looked for the next free id with a pass over the whole 1 GiB (in the worker); the
panel now gives it from the table. (3) The current code. The one redo above 100 ms (178 ms, the
merge of 349 k voxels, canvas drawn by software GL) is napari's whole-slice refresh after a
redo, with its texture upload; the baseline's redo took up to 1.4 s. napari colours a labels
slice with numba when it is installed (a dependency now): without it the numpy fallback takes
~80 ms per 2048 x 2048 slice on every undo and redo. (4) 2026-12-01, with
``--diagnose`` (``stall_probe.py``: the threads' stacks while the loop is late, garbage
collections timed): three runs with the canvas drawn, no gap over 100 ms, undo and redo at
most 62 ms; the 178 ms redo of (3) did not come back. A full garbage collection of this
process's heap costs ~0.17 s (napari and torch imported) and can fall in any gap; the Proofread
panel does not freeze the heap for its edits (jobs such as training and Auto-label do,
``core.heap``) because objects alive then would wait for the panel to close to be collected.

Where the time went in the baseline (profiled on this file): the edit read and wrote its
objects' boxes in 32 x 256 x 256 zstd chunks (a 20 x 200 x 200 box: ~15 ms to read, ~60 ms to
write), ``data_setitem`` read the changed voxels twice and wrote them once more through zarr,
a split added its watershed, undo and redo re-read the whole slice (64 chunks, ~0.2 s), and a
merge measured the whole array again and refilled the table (~2 s).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

SHAPE = (64, 2048, 2048)
VOXEL_SIZE = (40.0, 10.0, 10.0)
TARGET_MS = 100.0


# ---- the labels on disk ---------------------------------------------------------------------
def _ellipsoid(slab, z0, centre, radii, value) -> None:
    """Paint an ellipsoid (centre, semi-axes in voxels) into ``slab`` (z from ``z0``)."""
    lo = [max(0, int(c - r)) for c, r in zip(centre, radii)]
    hi = [int(c + r) + 1 for c, r in zip(centre, radii)]
    lo[0], hi[0] = max(lo[0], z0), min(hi[0], z0 + slab.shape[0])
    hi[1], hi[2] = min(hi[1], slab.shape[1]), min(hi[2], slab.shape[2])
    if any(h <= lo_ for lo_, h in zip(lo, hi)):
        return
    z, y, x = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    inside = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii)) <= 1
    box = slab[lo[0] - z0 : hi[0] - z0, lo[1] : hi[1], lo[2] : hi[2]]
    box[inside] = value


def plan_objects(shape, seed: int = 0) -> list[dict]:
    """Ellipsoids (and touching pairs) per cell of 32 x 256 x 256, centred on chunk corners."""
    rng = np.random.default_rng(seed)
    objects: list[dict] = []
    for zc in range(16, shape[0], 32):
        for yc in range(256, shape[1], 256):
            for xc in range(256, shape[2], 256):
                kind = rng.choice(["large", "medium", "small", "pair"], p=[0.2, 0.3, 0.35, 0.15])
                z = zc + rng.integers(-2, 3)
                if kind == "large":
                    parts = [((z, yc, xc), (rng.uniform(8, 10), *rng.uniform(80, 100, 2)))]
                elif kind == "medium":
                    centre = (z, *(np.array([yc, xc]) + rng.integers(-40, 41, 2)))
                    parts = [(centre, (rng.uniform(5, 7), *rng.uniform(45, 65, 2)))]
                elif kind == "pair":  # two lobes of one id, touching at a neck
                    r = rng.uniform(30, 50)
                    parts = [((z, yc, xc + s * 0.85 * r), (6, r, r)) for s in (-1, 1)]
                else:  # four small ones, one per quadrant (each inside one chunk)
                    for dy in (-64, 64):
                        for dx in (-64, 64):
                            radii = (rng.uniform(4, 6), *rng.uniform(28, 40, 2))
                            objects.append(
                                {"kind": "small", "parts": [((z, yc + dy, xc + dx), radii)]}
                            )
                    continue
                objects.append({"kind": str(kind), "parts": parts})
    for i, obj in enumerate(objects, 1):
        obj["id"] = i
        obj["parts"] = [([float(c) for c in p], [float(r) for r in q]) for p, q in obj["parts"]]
    return objects


def write_labels(folder: Path, shape=SHAPE, seed: int = 0):
    """Write (or reuse) the zarr group ``folder/autolabel.zarr``; return labels and objects."""
    import zarr

    from napari_anatomics.core.blocks import DEFAULT_CHUNKS

    out = folder / "autolabel.zarr"
    chunks = tuple(min(c, s) for c, s in zip(DEFAULT_CHUNKS, shape))
    if out.exists():
        array = zarr.open_group(str(out), mode="r+")["labels"]
        if tuple(array.shape) == tuple(shape) and "bench_objects" in array.attrs:
            return array, json.loads(array.attrs["bench_objects"])
        shutil.rmtree(out)
    objects = plan_objects(shape, seed)
    group = zarr.open_group(str(out), mode="a")
    array = group.create_array("labels", shape=shape, chunks=chunks, dtype="uint32", fill_value=0)
    for z0 in range(0, shape[0], chunks[0]):
        slab = np.zeros((min(chunks[0], shape[0] - z0), *shape[1:]), np.uint32)
        for obj in objects:
            for centre, radii in obj["parts"]:
                _ellipsoid(slab, z0, centre, radii, obj["id"])
        array[z0 : z0 + len(slab)] = slab
    array.attrs.update(
        voxel_size_nm=list(VOXEL_SIZE), n_objects=len(objects), bench_objects=json.dumps(objects)
    )
    return zarr.open_group(str(out), mode="r+")["labels"], objects


# ---- measuring the event loop ---------------------------------------------------------------
def spin(seconds: float, until=None) -> None:
    """Run the event loop for ``seconds``, or until ``until()`` holds (checked every 20 ms)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, end = QEventLoop(), time.perf_counter() + seconds
    check = QTimer()
    check.setInterval(20)
    check.timeout.connect(
        lambda: (time.perf_counter() > end or (until and until())) and loop.quit()
    )
    check.start()
    loop.exec_()
    check.stop()


class StallMeter:
    """A 5 ms ``QTimer``; runs an action in the event loop and measures the gaps around it."""

    def __init__(self, interval_ms: int = 5, probe=None) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        #: A started :class:`stall_probe.StallProbe` (``--diagnose``), or None.
        self.probe = probe
        if probe is not None:
            self.timer.timeout.connect(probe.beat)

    def spin(self, seconds: float, until=None) -> None:
        """:func:`spin`."""
        spin(seconds, until)

    def measure(self, action, done, idle, settle_s: float = 600.0) -> dict:
        """Run ``action`` from the event loop; wait until ``idle()``.

        Returns the longest gap between ticks from the action's start until idle
        (``stall``: the event loop's longest wait, whichever thread did the work), the
        time until ``done()`` held (``done``: the edit on screen and in the undo
        history) and until idle (``idle``: the table measured again).
        """
        from qtpy.QtCore import QTimer

        self.ticks, box = [], {}

        def run() -> None:
            box["t0"] = time.perf_counter()
            box["result"] = action()

        def finished() -> bool:
            if "t0" in box and "done" not in box and done():
                box["done"] = time.perf_counter()
            return "done" in box and idle()

        self.timer.start()
        self.spin(0.1)
        QTimer.singleShot(0, run)
        self.spin(settle_s, until=finished)
        t_idle = time.perf_counter()
        self.spin(0.2)
        self.timer.stop()
        ticks = np.array([box["t0"], *self.ticks, t_idle])
        ticks = np.sort(ticks[(ticks >= box["t0"]) & (ticks <= t_idle)])
        if self.probe is not None:
            self.probe.report(list(ticks))
        return {
            "stall": 1e3 * float(np.diff(ticks).max()),
            "done": 1e3 * (box["done"] - box["t0"]),
            "idle": 1e3 * (t_idle - box["t0"]),
            "result": box["result"],
        }


# ---- driving the panel ----------------------------------------------------------------------
def _select_rows(table, ids) -> None:
    from qtpy.QtCore import QItemSelectionModel

    table.clearSelection()
    flags = QItemSelectionModel.Select | QItemSelectionModel.Rows
    for row in range(table.rowCount()):
        if table.row_id(row) in ids:
            table.selectionModel().select(table.model().index(row, 0), flags)


def _double_click(panel, layer, centre) -> None:
    """What napari gives the panel's double-click handler at data position ``centre``."""
    position = layer.data_to_world(np.asarray(centre, float))
    event = SimpleNamespace(position=tuple(position), view_direction=None, dims_displayed=[1, 2])
    panel._on_double_click(layer, event)


def cases(objects: list[dict], repeats: int) -> list[tuple[str, list[dict]]]:
    """Objects per action: deletes and merges of small to large objects, splits of pairs."""
    by_kind = {k: [o for o in objects if o["kind"] == k] for k in ("small", "medium", "large")}
    pairs = [o for o in objects if o["kind"] == "pair"]
    plan = []
    for r in range(repeats):
        kind = ("small", "medium", "large")[r % 3]
        plan.append(("delete", [by_kind[kind][r]]))
        plan.append(("merge", [by_kind[kind][-1 - r], by_kind["small"][-5 - r]]))
        plan.append(("split", [pairs[r]]))
    return plan


def run(
    folder: Path, shape, repeats: int, show: bool = False, cached: bool = True, probe=None
) -> list:
    """Write/open the labels, measure them in the panel, time each case; return rows.

    ``cached``: the layer holds the labels as Auto-label shows them (a
    :class:`~napari_anatomics.core.chunkcache.CachedArray` over the zarr array);
    otherwise the zarr array itself (the baseline: the previous release).
    """
    import napari
    import zarr

    from napari_anatomics.core.chunkcache import CachedArray
    from napari_anatomics.napari.panels.proofread import ProofreadWidget

    t = time.perf_counter()
    labels, objects = write_labels(folder, tuple(shape))
    print(
        f"labels {labels.shape} {labels.dtype} chunks {labels.chunks}: {len(objects)} objects, "
        f"{labels.nbytes / 2**30:.2f} GiB, ready in {time.perf_counter() - t:.0f} s"
    )
    viewer = napari.Viewer(show=show)
    layer = viewer.add_labels(
        CachedArray(labels) if cached else labels,
        name="cells auto-label",
        scale=VOXEL_SIZE,
        metadata={
            "voxel_size": VOXEL_SIZE,
            "voxel_size_origin": "file",
            "source": f"{folder / 'autolabel.zarr'}:labels",
        },
    )
    assert isinstance(layer.data, CachedArray if cached else zarr.Array)
    meter = StallMeter(probe=probe)
    panel = ProofreadWidget(viewer)
    panel.show()
    edits = []
    panel.edited.connect(edits.append)

    def idle() -> bool:
        return not panel.busy and not panel._timer.isActive() and not panel.edits.busy

    t = time.perf_counter()
    meter.spin(1200, until=lambda: len(panel.frame) > 0 and idle())
    print(f"measured {len(panel.frame)} objects in {time.perf_counter() - t:.0f} s")
    voxels = dict(zip(panel.frame["id"], panel.frame["voxels"]))
    rows = []
    for action, objs in cases(objects, repeats):
        ids = [o["id"] for o in objs]
        centre = objs[0]["parts"][0][0]
        viewer.dims.current_step = (round(centre[0]), 0, 0)  # look at the object
        meter.spin(0.3)
        if action == "delete":

            def go(c=centre):
                return _double_click(panel, layer, c)
        elif action == "merge":
            _select_rows(panel.table, ids)

            def go():
                return panel.edit_tools.merge_selected()
        else:
            seeds = {k + 1: np.array([part[0]]) for k, part in enumerate(objs[0]["parts"])}

            def go(s=seeds):
                return panel.edit_tools.split(s)

        n = len(edits)
        result = meter.measure(go, lambda n=n: len(edits) > n, idle)
        undo = meter.measure(panel.undo, lambda: True, idle)
        redo = meter.measure(panel.redo, lambda: True, idle)
        meter.measure(panel.undo, lambda: True, idle)  # back to the labels as written
        assert all(
            int(layer.data[tuple(round(c) for c in o["parts"][0][0])]) == o["id"] for o in objs
        ), "undo did not restore the objects"
        row = {
            "action": action,
            "ids": ids,
            "voxels": int(sum(voxels[i] for i in ids)),
            **{k: result[k] for k in ("stall", "done", "idle")},
            "undo": undo["stall"],
            "redo": redo["stall"],
        }
        print(
            " ".join(
                f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            flush=True,
        )
        rows.append(row)
    meter.spin(600, until=idle)  # let the last measurement end before closing
    if cached:
        assert layer.data.flush(timeout=600), "the file did not get every change"
    panel.close()
    viewer.close()
    return rows


def report(arms: dict[str, list[dict]]) -> str:
    """Side by side per action: voxels, event-loop stall, edit shown, table ready, undo, redo."""
    lines = [
        "action  | layer data      | object voxels     | stall ms (med / max) | "
        "shown ms (med) | table ms (med) | undo ms (max) | redo ms (max) | target ms"
    ]
    for action in ("delete", "merge", "split"):
        for arm, rows in arms.items():
            sel = [r for r in rows if r["action"] == action]
            if not sel:
                continue
            vox, stall = [r["voxels"] for r in sel], [r["stall"] for r in sel]
            lines.append(
                f"{action:7} | {arm:15} | {min(vox):>7,}-{max(vox):<9,} | "
                f"{np.median(stall):7.0f} / {max(stall):<10.0f} | "
                f"{np.median([r['done'] for r in sel]):14.0f} | "
                f"{np.median([r['idle'] for r in sel]):14.0f} | "
                f"{max(r['undo'] for r in sel):13.0f} | {max(r['redo'] for r in sel):13.0f} | "
                f"{TARGET_MS:.0f}"
            )
    return "\n".join(lines)


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="folder for the zarr (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the zarr for the next run")
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE)
    parser.add_argument("--repeats", type=int, default=3, help="objects per action")
    parser.add_argument(
        "--show", action="store_true", help="show the window (under xvfb-run: the canvas is drawn)"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the zarr-array layer (the baseline)"
    )
    parser.add_argument(
        "--diagnose", action="store_true", help="print what each thread did in gaps over 100 ms"
    )
    args = parser.parse_args()
    probe = None
    if args.diagnose:
        from stall_probe import StallProbe  # this folder

        probe = StallProbe()
        probe.start()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="proofread_stall_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        arms = {"CachedArray": run(folder, args.shape, args.repeats, args.show, probe=probe)}
        if not args.no_baseline:
            arms["zarr (baseline)"] = run(
                folder, args.shape, args.repeats, args.show, False, probe=probe
            )
        print(report(arms))
    finally:
        if not args.keep:
            shutil.rmtree(folder / "autolabel.zarr", ignore_errors=True)


if __name__ == "__main__":
    main()
