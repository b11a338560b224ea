"""The one-command demo, shrunk to seconds: every output is written and consistent."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_anatomics.analyze.measure import read_csv
from napari_anatomics.analyze.meshes import read_ply
from napari_anatomics.cli import main
from napari_anatomics.core.progress import run_job
from napari_anatomics.tasks.demo import format_summary, run_demo

TINY = {"iterations": 3, "window": (1, 32, 32), "batch": 2, "depth": 3, "tta": 0}


@pytest.mark.slow
def test_demo_writes_model_prediction_stats_meshes(tmp_path):
    out = tmp_path / "demo"
    messages = []
    result = run_job(run_demo(out, **TINY), callback=lambda e: messages.append(e.message))
    phases = {m.split(":")[0] for m in messages}
    assert {"train", "predict", "postprocess"} <= phases
    assert result.train_steps == 3
    assert (out / "model" / "config.json").is_file()
    labels = zarr.open_group(str(out / "prediction.zarr"), mode="r")["labels"]
    assert labels.shape == result.test_shape
    # The stats CSV has one row per object of the written labels.
    table = read_csv(result.stats_csv)
    ids = np.unique(labels[...])
    assert sorted(table["id"]) == [int(i) for i in ids if i]
    assert result.evaluation.n_pred == len(table)
    assert result.evaluation.n_gt > 20  # the painted chloroplasts of the unseen part
    summary = (out / "demo-summary.txt").read_text()
    assert summary.strip() == format_summary(result)
    assert "Brookhouse" in summary
    for path in result.meshes:
        assert path.exists() and read_ply(path) is not None


def test_demo_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("precious")
    code = main(["demo", "--out", str(tmp_path), "--iterations", "1"])
    assert code == 1
    assert "not an earlier demo" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "precious"
