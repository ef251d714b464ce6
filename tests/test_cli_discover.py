"""``failscope discover`` end to end in a subprocess, and its one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from failscope import load_run
from failscope.run import EXAMPLE_COLUMNS


def discover_cli(args, env, cwd=None, timeout=240, quiet=("-q",)):
    """Run ``failscope [-q] discover ARGS``; -q keeps INFO logs off stderr."""
    cmd = [sys.executable, "-m", "failscope", *quiet, "discover", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def assert_one_line_error(proc, *parts):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("failscope discover: error: ")
    for part in parts:
        assert part in lines[0], lines[0]


def test_cli_end_to_end_torchscript_and_tiny_clip(
    image_dataset, tiny_clip, channel_classifier_ts, cli_env, tmp_path
):
    rows = image_dataset.rows
    (image_dataset.root / rows[4]["path"]).unlink()
    (image_dataset.root / rows[90]["path"]).write_bytes(b"GIF89a truncated")
    out = tmp_path / "run"
    proc = discover_cli(
        [
            "--data", image_dataset.manifest, "--model", channel_classifier_ts,
            "--clip", tiny_clip.config, "--clip-checkpoint", tiny_clip.checkpoint,
            "--batch-size", 32, "--out", out,
        ],
        cli_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "━" not in proc.stderr and "predicting" not in proc.stderr  # -q: no bars
    assert f"run written to {out}" in proc.stdout
    assert f"report: {out / 'report.html'}" in proc.stdout  # a path stays on one line
    assert "skipped inputs: 2 (1 missing file, 1 unreadable image)" in proc.stdout
    for name in ("ant", "bee", "cat", "0/0", "1/0", "2/0", "err in", "100.0%"):
        assert name in proc.stdout
    for name in ("run.json", "examples.parquet", "slices.json", "slice_scores.npy"):
        assert (out / name).is_file()
    run = load_run(out)
    ex = run.examples
    n_core = len(EXAMPLE_COLUMNS)
    assert tuple(ex.columns[:n_core]) == EXAMPLE_COLUMNS
    assert list(ex.columns[n_core:]) == ["planted", "brightness"]
    assert len(ex) == 142 and sorted(s.id for s in run.skipped) == [4, 90]
    assert (ex["correct"] == (ex["pred"] == ex["label"])).all()
    assert (ex["correct"] == ~ex["planted"]).all()
    fit = ex[ex["split"] == "val"]
    assert (fit["slice"] == (fit["failure_score"] > 0)).all()
    for s in run.slices:
        members = fit[fit["label"] == s.class_index]
        assert s.size == members["slice"].sum()
        assert run.classes[s.class_index].n_fit == len(members)
    assert run.directions.shape == (3, 32)
    assert run.embeddings().shape == (142, 32)
    clip = run.info.embeddings.clip
    assert clip.name == str(tiny_clip.config.resolve()) and not clip.random_init
    assert run.info.model.kind == "torchscript"
    assert run.config.clip_pretrained is None  # what was used: a config + checkpoint, no tag


def test_cli_image_folder_with_predictions_and_embeddings(dataset_writer, cli_env, tmp_path):
    rows = dataset_writer(tmp_path / "tree", layout="folder", n_per_class=20)
    # ImageFolder order: split folder, class, file name == the writer's order
    labels = np.array([["ant", "bee", "cat"].index(r["label"]) for r in rows])
    planted = np.array([r["planted"] for r in rows])
    pd.DataFrame({"pred": np.where(planted, (labels + 2) % 3, labels)}).to_csv(
        tmp_path / "preds.csv", index=False
    )
    emb = np.random.default_rng(1).normal(size=(len(rows), 6)).astype(np.float32)
    emb[:, 2] -= 5.0 * planted
    np.save(tmp_path / "emb.npy", emb)
    out = tmp_path / "run"
    args = ["--data", tmp_path / "tree", "--predictions", tmp_path / "preds.csv"]
    args += ["--embeddings", tmp_path / "emb.npy", "--threshold", "quantile:0.5", "--out", out]
    proc = discover_cli(args, cli_env)
    assert proc.returncode == 0, proc.stderr
    run = load_run(out)
    ex = run.examples
    assert ex["path"].iloc[0] == "train/ant/000.png" and len(ex) == 120
    assert (ex["correct"] == ~planted).all()
    assert [s.size for s in run.slices] == [10, 10, 10]
    assert (run.directions[:, 2] < -0.5).all()  # failure direction points to -axis 2
    assert run.info.model.kind == "predictions" and run.info.data["kind"] == "imagefolder"


def test_cli_one_line_errors(image_dataset, cli_env, tmp_path):
    m = image_dataset.manifest
    (tmp_path / "classes.txt").write_text("ant\nbee\n")
    proc = discover_cli(
        [
            "--data",
            m,
            "--classes",
            tmp_path / "classes.txt",
            "--predictions",
            "p.npy",
            "--out",
            tmp_path / "r",
        ],
        cli_env,
    )
    assert_one_line_error(proc, "label 'cat' at row 48", "[ant, bee]", str(m))

    np.save(tmp_path / "p.npy", np.zeros(143, dtype=np.int64))
    proc = discover_cli(
        [
            "--data",
            m,
            "--predictions",
            tmp_path / "p.npy",
            "--embeddings",
            "e.npy",
            "--out",
            tmp_path / "r",
        ],
        cli_env,
    )
    assert_one_line_error(proc, "has 143 rows but the dataset has 144 examples", "p.npy")
    assert not (tmp_path / "r" / "run.json").exists()


def test_cli_pickled_checkpoint_is_refused(image_dataset, cli_env, tmp_path):
    import torch

    (tmp_path / "arch.py").write_text(
        "import torch\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten())\n"
    )
    torch.save({"net": torch.nn.Linear(3, 3), "epoch": 1}, tmp_path / "ck.pt")  # needs pickle
    np.save(tmp_path / "emb.npy", np.zeros((144, 4), np.float32))
    args = ["--data", image_dataset.manifest, "--model", "arch:make", "--checkpoint", "ck.pt"]
    args += ["--embeddings", "emb.npy", "--out", tmp_path / "r"]
    proc = discover_cli(args, cli_env, cwd=tmp_path)
    assert_one_line_error(proc, "ck.pt needs pickle", "--trust-checkpoint")


def test_cli_missing_clip_weights_offline(image_dataset, cli_env, tmp_path):
    np.save(tmp_path / "p.npy", np.zeros(144, dtype=np.int64))
    env = dict(cli_env, HF_HUB_CACHE=str(tmp_path / "empty-hub"))
    args = ["--data", image_dataset.manifest, "--predictions", tmp_path / "p.npy"]
    proc = discover_cli([*args, "--out", tmp_path / "r"], env)
    assert_one_line_error(proc, "ViT-B-32", "laion2b_s34b_b79k", "--clip-checkpoint PATH")


def test_cli_help_has_examples(cli_env):
    proc = subprocess.run(
        [sys.executable, "-m", "failscope", "discover", "--help"],
        capture_output=True, text=True, env=cli_env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0
    for part in ("examples:", "--model", "--predictions", "torchvision:resnet50", "--clip world"):
        assert part in proc.stdout
