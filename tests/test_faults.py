"""The fault suite: bad input and bad luck through the real command line.

Every case runs ``python -m napari_anatomics.cli ...`` in a subprocess, in a
fresh work folder, and checks three things:

* the exit code (1: refused or failed, 2: a usage error, 130: interrupted);
* one message line, ``anatomics COMMAND: error: ...``, that names the file or
  option and the problem (no traceback, no stray library log lines, and for a
  refusal no progress bar either: nothing was done before it);
* what is on disk afterwards: the inputs and everything that was in the work
  folder unchanged, nothing new (no half-written output, no stray temporary
  file), unless the case says what may appear.

A new command (or a new way to fail) gets the same checks by adding one line
to :data:`CASES`. Read-only folders and full disks are simulated in the
subprocess by ``tests/faults/sitecustomize.py`` (root ignores permissions, and
a small file system needs mounting). The longer scenarios (a prediction run
twice over painted labels, SIGKILL during predict then resume, Ctrl-C during
train) are tests of their own below.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_anatomics.cli import _train as _train_cli
from napari_anatomics.cli import main
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.models import build_network, plan_architecture
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import save_model

FAULTS = Path(__file__).resolve().parent / "faults"
#: The model-folder check of ``anatomics train`` (outputs.check_train_output) is called
#: from cli/_train.py; its cases run once it is.
TRAIN_CHECKED = "check_train_output" in Path(_train_cli.__file__).read_text()
#: The smallest training run that still goes through every step.
TINY = (
    "--task instance --iterations 2 --architecture resunet3d --window 4,32,32 --width 4 "
    "--depth 3 --no-tune-decoding --precision float32 --threads 1 --voxel-size 10,10,40 "
    "--quiet"
)
#: Leftovers that must never stay behind: temporary names of writers, probes, stages.
STRAY = re.compile(r"(\.tmp|\.anatomics-|\.old-)")


class Copy(str):
    """A setup entry: copy this path of the data folder into the work folder."""


DIR = "<dir>"  # a setup entry: an empty folder


@dataclass(frozen=True)
class Case:
    """One bad input or fault, run through the CLI.

    ``argv``: the command line after ``anatomics`` (``{d}`` is the data folder);
    ``code``: the exit code; ``says``: a regex the error line must match;
    ``setup``: work-folder paths made first (text, :class:`Copy`, or :data:`DIR`);
    ``env``: fault injection (``READONLY``/``NOSPACE``: a work-folder path,
    ``FREE_BYTES``: a number); ``leaves``: a regex of paths that may appear;
    ``work``: the failure comes after work started (a progress bar may show);
    ``train_check``: needs cli/_train.py to call ``check_train_output``.
    """

    id: str
    argv: str
    code: int
    says: str
    setup: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    leaves: str = ""
    work: bool = False
    train_check: bool = False


M, IMG, LAB = "{d}/model", "{d}/img.tif", "{d}/lab.tif"

CASES = [
    # --- missing, damaged and ambiguous inputs (already handled; kept handled) ---
    Case("info-missing-file", "info {d}/nope.tif", 1, r"nope\.tif: no such file"),
    Case("info-not-a-tiff", "info {d}/junk.tif", 1, r"junk\.tif: cannot be read"),
    Case("info-h5-several-datasets", "info {d}/data.h5", 1, r"data\.h5: holds several datasets"),
    Case("predict-wrong-h5-key", f"predict {M} {{d}}/data.h5:nope --out p.zarr", 1,
         r"data\.h5: has no dataset 'nope'"),
    Case("info-wrong-zarr-component", "info {d}/stack.zarr:nope", 1,
         r"stack\.zarr: has no component 'nope'"),
    Case("predict-missing-model", f"predict {{d}}/nope {IMG} --out p.zarr", 1, r"nope"),
    Case("stats-image-shape-mismatch", f"stats {LAB} --csv s.csv --image {{d}}/small.tif", 1,
         r"--image .*small\.tif has shape \(8, 32, 32\)"),
    Case("evaluate-shape-mismatch", f"evaluate {{d}}/small.tif {LAB}", 1,
         r"small\.tif has shape \(8, 32, 32\) but the ground truth .*lab\.tif has"),
    Case("check-voxel-size-negative", f"check {IMG} {LAB} --voxel-size=-1,1,1", 2,
         r"voxel size '-1,1,1' must be three positive numbers"),
    Case("stats-voxel-size-nan", f"stats {LAB} --csv s.csv --voxel-size nan,1,1", 2,
         r"voxel size 'nan,1,1' must be three positive numbers"),
    # --- 1, 2: existing outputs are kept unless --overwrite ---
    Case("postprocess-existing-labels", "postprocess pred.zarr --out pred.zarr", 1,
         r"pred\.zarr already holds 'labels', which are kept", {"pred.zarr": Copy("pred.zarr")}),
    Case("stats-existing-csv", f"stats {LAB} --csv s.csv", 1, r"--csv s\.csv: already exists",
         {"s.csv": "mine"}),
    Case("stats-existing-totals", f"stats {LAB} --csv s.csv --totals-csv t.csv", 1,
         r"--totals-csv t\.csv: already exists", {"t.csv": "mine"}),
    Case("evaluate-existing-json", f"evaluate {LAB} {LAB} --json e.json", 1,
         r"--json e\.json: already exists", {"e.json": "mine"}),
    Case("mesh-existing-export", f"mesh {LAB} --out meshes", 1,
         r"--out meshes: already holds 1 earlier export", {"meshes/mesh_00001.ply": "old"}),
    Case("mesh-folder-of-other-files", f"mesh {LAB} --out mine", 1,
         r"--out mine: already holds 1 file", {"mine/notes.txt": "mine"}),
    Case("combine-existing", "combine {d}/slices s.tif", 1, r"s\.tif: already exists",
         {"s.tif": "mine"}),
    Case("combine-overwrite-keeps-a-plain-folder", "combine {d}/slices s.zarr --overwrite", 1,
         r"s\.zarr: is a folder that holds no earlier output", {"s.zarr/notes.txt": "mine"}),
    Case("demo-earlier-demo", "demo --out demo --iterations 1", 1,
         r"--out demo: holds an earlier demo, which is kept", {"demo/demo-summary.txt": "x"}),
    # --- 3: outputs go into a place of their own ---
    Case("predict-into-a-plain-folder", f"predict {M} {IMG} --out notes", 1,
         r"--out notes: is a folder holding 1 other file", {"notes/mine.txt": "mine"}),
    Case("predict-into-an-image-zarr", f"predict {M} {IMG} --out stack.zarr", 1,
         r"--out stack\.zarr: holds other data \(raw\)", {"stack.zarr": Copy("stack.zarr")}),
    Case("predict-into-a-file", f"predict {M} {IMG} --out img.tif", 1,
         r"--out img\.tif: is a file", {"img.tif": "mine"}),
    Case("postprocess-into-a-plain-folder", "postprocess {d}/pred.zarr --out notes", 1,
         r"--out notes: is a folder holding", {"notes/mine.txt": "mine"}),
    Case("train-into-a-plain-folder", f"train --images {IMG} --labels {LAB} --out notes {TINY}",
         1, r"--out notes: is a folder holding 1 other file", {"notes/mine.txt": "mine"},
         train_check=True),
    Case("train-resume-other-data", f"train --images {{d}}/small_img.tif --labels "
         f"{{d}}/small.tif --out trained --resume {TINY}", 1,
         r"--resume: trained was trained on a stack of shape \(8, 64, 64\)",
         {"trained": Copy("trained")}, train_check=True),
    Case("train-resume-nothing", f"train --images {IMG} --labels {LAB} --out m --resume {TINY}",
         1, r"--resume: m holds no model", train_check=True),
    Case("train-existing-model", f"train --images {IMG} --labels {LAB} --out trained {TINY}",
         1, r"trained already holds a trained model", {"trained": Copy("trained")}),
    # --- 4: a truncated TIFF is refused when opened, by name ---
    Case("info-truncated-tiff", "info {d}/trunc.tif", 1, r"trunc\.tif: is incomplete"),
    Case("check-truncated-tiff", f"check {{d}}/trunc.tif {LAB}", 1, r"trunc\.tif: is incomplete"),
    Case("stats-truncated-tiff", "stats {d}/trunc.tif --csv s.csv", 1, r"trunc\.tif: is incompl"),
    Case("train-truncated-tiff", f"train --images {{d}}/trunc.tif --labels {LAB} --out m {TINY}",
         1, r"trunc\.tif: is incomplete"),
    # --- 5: dimensionality and type of every input ---
    Case("stats-2d-image", "stats {d}/lab2d.tif --csv s.csv", 1, r"lab2d\.tif: is a single 2D"),
    Case("mesh-2d-image", "mesh {d}/lab2d.tif --out meshes", 1, r"lab2d\.tif: is a single 2D"),
    Case("info-mixed-folder", "info {d}/mixed", 1, r"mixed/b\.tif: holds no readable image"),
    Case("stats-float-labels", "stats {d}/float.tif --csv s.csv", 1,
         r"float\.tif: holds float32 values, but labels must be integer ids"),
    # --- 6, 7: every numeric option has a range, every path its kind ---
    Case("mesh-negative-id", f"mesh {LAB} --out meshes --ids -1", 2,
         r"--ids '-1': object ids are integers >= 1"),
    Case("mesh-downscale-0", f"mesh {LAB} --out meshes --downscale 0", 2, r"--downscale '0'"),
    Case("mesh-smooth-negative", f"mesh {LAB} --out meshes --smooth -1", 2,
         r"--smooth must be >= 0, not -1"),
    Case("mesh-out-is-a-file", f"mesh {LAB} --out f.txt", 1, r"--out f\.txt: is a file",
         {"f.txt": "mine"}),
    Case("stats-csv-is-a-folder", f"stats {LAB} --csv x.csv", 1, r"--csv x\.csv: is a folder",
         {"x.csv": DIR}),
    Case("evaluate-json-is-a-folder", f"evaluate {LAB} {LAB} --json x.json", 1,
         r"--json x\.json: is a folder", {"x.json": DIR}),
    Case("evaluate-iou-above-1", f"evaluate {LAB} {LAB} --iou 1.5", 2,
         r"--iou 1\.5: each must be a number above 0 and at most 1"),
    Case("evaluate-iou-0", f"evaluate {LAB} {LAB} --iou 0,0.5", 2, r"--iou 0, 0\.5: each must"),
    Case("predict-seed-threshold", f"predict {M} {IMG} --out p.zarr --seed-threshold 5", 2,
         r"--seed-threshold must be in \[0, 1\], not 5"),
    Case("postprocess-min-size", "postprocess {d}/pred.zarr --out l.zarr --min-size -3", 2,
         r"--min-size must be >= 0, not -3"),
    Case("predict-thresholds", f"predict {M} {IMG} --out p.zarr --thresholds 0.5,2", 2,
         r"--thresholds 0\.5,2: each is a probability in \[0, 1\]"),
    Case("predict-batch-0", f"predict {M} {IMG} --out p.zarr --batch 0", 2,
         r"--batch must be >= 1, not 0"),
    Case("predict-workers-0", f"predict {M} {IMG} --out p.zarr --workers 0", 2,
         r"--workers must be >= 1, not 0"),
    Case("predict-memory-0", f"predict {M} {IMG} --out p.zarr --memory-mb 0", 2,
         r"--memory-mb must be > 0, not 0"),
    Case("demo-iterations-0", "demo --out demo --iterations 0", 2, r"--iterations must be >= 1"),
    # --- 8: unwritable or full before the work, in words, with the path ---
    Case("stats-read-only-folder", f"stats {LAB} --csv ro/s.csv", 1,
         r"ro/s\.csv: cannot be written: ro is on a read-only file system", {"ro": DIR},
         {"READONLY": "ro"}),
    Case("combine-read-only-folder", "combine {d}/slices ro/s.zarr", 1,
         r"ro/s\.zarr: cannot be written: ro is on a read-only", {"ro": DIR}, {"READONLY": "ro"}),
    Case("mesh-read-only-folder", f"mesh {LAB} --out ro/meshes", 1,
         r"ro/meshes: cannot be written", {"ro": DIR}, {"READONLY": "ro"}),
    Case("predict-read-only-folder", f"predict {M} {IMG} --out ro/p.zarr", 1,
         r"ro/p\.zarr: cannot be written", {"ro": DIR}, {"READONLY": "ro"}),
    Case("stats-disk-full", f"stats {LAB} --csv s.csv", 1,
         r"s\.csv: not enough free space: it needs about", env={"FREE_BYTES": 1000}),
    Case("combine-disk-full", "combine {d}/slices s.zarr", 1, r"s\.zarr: not enough free space",
         env={"FREE_BYTES": 1000}),
    Case("predict-disk-full", f"predict {M} {IMG} --out p.zarr", 1,
         r"p\.zarr: not enough free space", env={"FREE_BYTES": 1000}),
    Case("predict-disk-fills-up", f"predict {M} {IMG} --out p.zarr", 1,
         r"p\.zarr/\S+: the disk is full .*free some space",
         env={"NOSPACE": "p.zarr/.probabilities.partial/c"}, leaves=r"p\.zarr.*", work=True),
    Case("evaluate-json-read-only", f"evaluate {LAB} {LAB} --json ro/e.json", 1,
         r"ro/e\.json: cannot be written", {"ro": DIR}, {"READONLY": "ro"}),
    # --- 9, 11: model files that do not fit or could run code ---
    Case("predict-weights-do-not-fit", f"predict {{d}}/mismatch {IMG} --out p.zarr", 1,
         r"weights\.pt does not fit the network described in"),
    Case("predict-pickled-weights", f"predict {{d}}/pickled {IMG} --out p.zarr", 1,
         r"weights\.pt was refused: it carries a reference to the Python object \S*system"),
    Case("predict-damaged-weights", f"predict {{d}}/damaged {IMG} --out p.zarr", 1,
         r"weights\.pt: is damaged or incomplete"),
    # --- 13: TLS for --scheduler ---
    Case("predict-tls-without-scheduler", f"predict {M} {IMG} --out p.zarr --tls-ca-file ca.pem",
         1, r"--tls-ca-file secure the connection to --scheduler"),
    Case("predict-tls-on-tcp", f"predict {M} {IMG} --out p.zarr --scheduler tcp://10.9.9.9:8786 "
         "--tls-ca-file ca.pem --tls-cert c.pem --tls-key k.pem", 1,
         r"--scheduler tcp://10\.9\.9\.9:8786: with --tls-\* options the address must start "
         r"with tls://", {"ca.pem": "x", "c.pem": "x", "k.pem": "x"}),
    Case("predict-tls-missing-file", f"predict {M} {IMG} --out p.zarr --scheduler "
         "tls://10.9.9.9:8786 --tls-ca-file ca.pem", 1, r"--tls-ca-file ca\.pem: no such file"),
]  # fmt: skip


# --- the data, made once ---------------------------------------------------------------------


def _tiny_model(folder: Path, width: int = 4) -> None:
    window = (4, 32, 32)
    arch = plan_architecture("resunet3d", 2, (40, 10, 10), window, width=width, depth=2)
    config = ModelConfig(
        task="instance",
        classes=["object"],
        window=window,
        voxel_size=(40, 10, 10),
        architecture=arch,
        targets=["foreground", "boundary"],
        normalization={"mean": 120.0, "std": 40.0},
    )
    torch.manual_seed(0)
    save_model(folder, build_network(config), config)


class _RunsCode:
    """Unpickling this calls ``os.system``: what a shared model file must never do."""

    def __reduce__(self):
        return (os.system, ("echo this ran",))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Inputs for every case: stacks, damaged files, models, a prediction."""
    d = tmp_path_factory.mktemp("fault-data")
    syn = synthetic_sbfsem((8, 64, 64), 6, seed=4)
    tifffile.imwrite(d / "img.tif", syn.image)
    tifffile.imwrite(d / "lab.tif", syn.labels.astype(np.uint16))
    tifffile.imwrite(d / "lab2d.tif", syn.labels[0].astype(np.uint16))
    tifffile.imwrite(d / "float.tif", syn.labels.astype(np.float32))
    tifffile.imwrite(d / "small.tif", syn.labels[:, :32, :32].astype(np.uint16))
    tifffile.imwrite(d / "small_img.tif", syn.image[:, :32, :32])
    whole = (d / "img.tif").read_bytes()
    (d / "trunc.tif").write_bytes(whole[: len(whole) * 3 // 4])
    (d / "junk.tif").write_text("not a tiff")
    (d / "mixed").mkdir()
    tifffile.imwrite(d / "mixed" / "a.tif", syn.image[0])
    (d / "mixed" / "b.tif").write_bytes((d / "mixed" / "a.tif").read_bytes()[:8])
    (d / "slices").mkdir()
    for z in range(4):
        tifffile.imwrite(d / "slices" / f"s_{z}.tif", syn.image[z])
    with h5py.File(d / "data.h5", "w") as handle:
        handle["raw"], handle["labels"] = syn.image, syn.labels
    zarr.open_group(str(d / "stack.zarr"), mode="w").create_array(
        "raw", data=syn.image, chunks=(4, 64, 64)
    )
    _tiny_model(d / "model")
    shutil.copytree(d / "model", d / "pickled")
    torch.save({"weights": _RunsCode()}, d / "pickled" / "weights.pt")
    shutil.copytree(d / "model", d / "damaged")
    weights = (d / "model" / "weights.pt").read_bytes()
    (d / "damaged" / "weights.pt").write_bytes(weights[: len(weights) // 2])
    _tiny_model(d / "mismatch", width=8)
    shutil.copy(d / "model" / "weights.pt", d / "mismatch" / "weights.pt")
    args = ["--precision", "float32"]
    assert main(["predict", str(d / "model"), str(d / "img.tif"), "--out", str(d / "pred.zarr"),
                 *args]) == 0  # fmt: skip
    train = ["train", "--images", str(d / "img.tif"), "--labels", str(d / "lab.tif")]
    assert main([*train, "--out", str(d / "trained"), *shlex.split(TINY)]) in (0, 1)
    assert (d / "trained" / "checkpoint.pt").is_file()
    return d


# --- running the CLI -------------------------------------------------------------------------


def anatomics(
    argv: list[str], cwd: Path, env: dict | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (fault injection through ``env``)."""
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if env:
        environ["PYTHONPATH"] = os.pathsep.join([str(FAULTS), environ.get("PYTHONPATH", "")])
        for key, value in env.items():
            value = str(cwd / value) if key in ("READONLY", "NOSPACE") else str(value)
            environ[f"ANATOMICS_FAULT_{key}"] = value
    return subprocess.run(
        [sys.executable, "-m", "napari_anatomics.cli", *argv],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its content."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def _set_up(work: Path, data: Path, setup: dict) -> None:
    for rel, what in setup.items():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(what, Copy):
            source = data / what
            copy = shutil.copytree if source.is_dir() else shutil.copy
            copy(source, target)
        elif what == DIR:
            target.mkdir()
        else:
            target.write_text(what)


def error_lines(result: subprocess.CompletedProcess, command: str) -> list[str]:
    """The ``anatomics COMMAND: error: ...`` lines of a run's stderr."""
    lines = result.stderr.replace("\r", "\n").splitlines()
    return [line for line in lines if line.startswith(f"anatomics {command}: error: ")]


def assert_one_clear_line(result, command: str, says: str, work: bool = False) -> str:
    """One error line that says ``says``; no traceback, no stray log lines."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    assert not re.search(r"^<tifffile|Warning:|WARNING:", text, flags=re.M), text
    errors = error_lines(result, command)
    assert len(errors) == 1, result.stderr
    assert re.search(says, errors[0]), errors[0]
    if not work:  # refused before any work: no progress bar, only the line and its hint
        others = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and line not in errors and not line.startswith(("  (", "note:"))
        ]
        assert not others, result.stderr
    return errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, data: Path, tmp_path: Path) -> None:
    if case.train_check and not TRAIN_CHECKED:
        pytest.skip("cli/_train.py does not call outputs.check_train_output yet")
    work = tmp_path / "work"
    work.mkdir()
    _set_up(work, data, case.setup)
    before, inputs = snapshot(work), snapshot(data)
    argv = shlex.split(case.argv.format(d=data))
    result = anatomics(argv, work, case.env)
    assert result.returncode == case.code, result.stdout + result.stderr
    assert_one_clear_line(result, argv[0], case.says, case.work)
    after = snapshot(work)
    assert snapshot(data) == inputs  # inputs are never touched
    changed = {k for k in before if after.get(k) != before[k]}
    assert not changed, f"changed or removed: {sorted(changed)}"
    new = [k for k in after if k not in before]
    unexpected = [k for k in new if not (case.leaves and re.fullmatch(case.leaves, k))]
    assert not unexpected, f"left behind: {unexpected}"
    assert not [k for k in after if STRAY.search(Path(k).name)], after


def test_python_api_refuses_what_the_cli_refuses():
    """Cases 7 and 12 from Python: voxel sizes, IoU thresholds, file names from layer names."""
    from napari_anatomics.analyze.evaluate import check_iou_thresholds
    from napari_anatomics.analyze.measure import measure
    from napari_anatomics.core.volume import Volume
    from napari_anatomics.io.outputs import safe_file_name

    labels = np.ones((2, 4, 4), np.uint16)
    for bad in [(-1, 1, 1), (float("nan"), 1, 1), (0, 10, 10)]:
        with pytest.raises(ValueError, match="three finite numbers above zero"):
            Volume(labels, bad)
        with pytest.raises(ValueError, match="three finite numbers above zero"):
            measure(labels, bad)
    for bad in ([1.5], [0.0]):
        with pytest.raises(ValueError, match="above 0 and at most 1"):
            check_iou_thresholds(bad)
    assert safe_file_name("f.h5:volumes/labels") == "f.h5_volumes_labels"


def test_scheduler_help_says_whom_to_trust(tmp_path):
    """Case 13: where --scheduler is documented, it says what connecting to one means."""
    result = anatomics(["predict", "--help"], tmp_path)
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "dask sends pickled Python objects" in text and "a cluster you control" in text
    assert "--tls-ca-file" in text and "--tls-cert" in text and "--tls-key" in text


# --- scenarios -------------------------------------------------------------------------------


def test_predict_twice_keeps_painted_labels_and_overwrite_replaces_them(data, tmp_path):
    """Case 1: labels proofread in a prediction zarr survive a re-run of predict."""
    predict = ["predict", str(data / "model"), str(data / "img.tif"), "--out", "p.zarr"]
    predict += ["--precision", "float32"]
    assert anatomics(predict, tmp_path).returncode == 0
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r+")
    original = group["labels"][:]
    maps = group["probabilities"][:]
    painted = original.copy()
    painted[2:5, 10:20, 10:20] = 77  # a correction painted and saved into the zarr
    group["labels"][2:5, 10:20, 10:20] = 77
    result = anatomics(predict, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kept the labels already in p.zarr:labels" in result.stdout
    assert "--overwrite" in result.stdout
    again = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    np.testing.assert_array_equal(again["labels"][:], painted)
    np.testing.assert_array_equal(again["probabilities"][:], maps)  # resumed: nothing redone
    result = anatomics([*predict, "--overwrite"], tmp_path)
    assert result.returncode == 0, result.stderr
    replaced = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["labels"][:]
    np.testing.assert_array_equal(replaced, original)  # the same model and settings
    assert not [p for p in tmp_path.rglob("*") if STRAY.search(p.name)]


def test_overwrite_replaces_outputs_and_only_them(data, tmp_path):
    """Cases 2 and 12: --overwrite replaces earlier exports, never the user's other files."""
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "mesh_00099.ply").write_text("old")
    (tmp_path / "meshes" / "notes.txt").write_text("mine")
    (tmp_path / "s.csv").write_text("old")
    labels = str(data / "lab.tif")
    result = anatomics(["mesh", labels, "--out", "meshes", "--overwrite", "--combined"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "meshes").iterdir()) == ["meshes.ply", "notes.txt"]
    assert (tmp_path / "meshes" / "notes.txt").read_text() == "mine"
    result = anatomics(["stats", labels, "--csv", "s.csv", "--overwrite"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "s.csv").read_text().startswith("# napari-anatomics measurements")
    assert not [p for p in tmp_path.rglob("*") if STRAY.search(p.name)]


def _done_regions(out: Path) -> list[int]:
    meta = out / ".probabilities.partial" / "zarr.json"
    try:
        return json.loads(meta.read_text())["attributes"].get("done_regions", [])
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.slow
def test_sigkill_during_predict_then_the_same_command_resumes(data, tmp_path):
    """A prediction killed outright (no cleanup at all) resumes where it stopped."""
    # 3 output chunks of 256 in x: 3 regions, written one by one
    image = synthetic_sbfsem((4, 32, 768), 8, seed=5).image
    tifffile.imwrite(tmp_path / "big.tif", image)
    argv = ["predict", str(data / "model"), "big.tif", "--out", "p.zarr", "--tta", "0"]
    argv += ["--memory-mb", "0.02", "--precision", "float32", "--no-postprocess"]
    environ = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "napari_anatomics.cli", *argv]
    process = subprocess.Popen(command, cwd=tmp_path, env=environ, stderr=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not _done_regions(tmp_path / "p.zarr") and time.monotonic() < deadline:
        assert process.poll() is None, "predict ended before a region was written"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = _done_regions(tmp_path / "p.zarr")
    assert done and not (tmp_path / "p.zarr" / "probabilities").exists()
    result = anatomics(argv, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    resumed = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["probabilities"][:]
    whole = [a if a != "p.zarr" else "whole.zarr" for a in argv]
    assert anatomics(whole, tmp_path).returncode == 0
    fresh = zarr.open_group(str(tmp_path / "whole.zarr"), mode="r")["probabilities"][:]
    # tiles predicted in other batches differ by float32 ulps; as uint8, one step at most
    assert np.abs(resumed.astype(np.int16) - fresh).max() <= 1
    assert not (tmp_path / "p.zarr" / ".probabilities.partial").exists()


@pytest.mark.slow
def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_train_saves_and_resume_continues(data, tmp_path):
    """Case 10: Ctrl-C saves the model so far, says so, and --resume continues it."""
    argv = ["train", "--images", str(data / "img.tif"), "--labels", str(data / "lab.tif")]
    argv += ["--out", "m", *shlex.split(TINY.replace("--iterations 2", "--iterations 100000"))]
    argv += ["--save-every", "2"]
    environ = {**os.environ, "OMP_NUM_THREADS": "1"}
    # SIGINT back to its default in the child: a suite started as a background job
    # (nohup ... &) hands its children SIGINT ignored, and Python then never raises
    # KeyboardInterrupt, whatever the CLI does.
    process = subprocess.Popen([sys.executable, "-m", "napari_anatomics.cli", *argv],
                               cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (tmp_path / "m" / "checkpoint.pt").exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted; the model so far is saved in m (add --resume" in stderr
    assert "Traceback" not in stderr
    saved = ModelConfig.load(tmp_path / "m")
    assert (tmp_path / "m" / "weights.pt").is_file() and saved.iterations >= 2
    assert not [p for p in (tmp_path / "m").iterdir() if STRAY.search(p.name)]
    more = [a if a != "100000" else str(saved.iterations + 1) for a in argv]
    result = anatomics([*more, "--resume"], tmp_path)
    assert result.returncode in (0, 1), result.stderr  # 1: a 2-step model finds nothing yet
    assert ModelConfig.load(tmp_path / "m").iterations == saved.iterations + 1
