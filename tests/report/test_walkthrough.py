"""Execute notebooks/walkthrough.ipynb: world, audit, discover, captions, report, annotate,
retrain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"


@pytest.mark.slow
def test_walkthrough_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    work = tmp_path / "work"
    monkeypatch.setenv("FAILSCOPE_WALKTHROUGH_DIR", str(work))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    run = work / "run"
    html = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="retrain"' in html and 'id="evaluation"' in html
    assert len(list((run / "plots").glob("slice-*-scores.png"))) >= 5
    # the small world still shows the planted failures
    evaluation = json.loads((run / "evaluation.json").read_text())
    plants = {p["plant"]: p for p in evaluation["plants"]}
    assert plants["rare_3_size_small"]["average_precision"] > 0.5
    assert plants["rare_3_size_small"]["slice_recall"] > 0.5
    annotations = json.loads((run / "annotations.json").read_text())
    assert [(a["label"], a["note"]) for a in annotations["annotations"]] == [
        ("core", "under-served in training")
    ]
    metrics = json.loads((run / "retrain" / "metrics.json").read_text())
    assert metrics["methods"]["audited"]["test_accuracy"] > 0.7
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
