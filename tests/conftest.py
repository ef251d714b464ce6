"""Shared test fixtures and helpers (offline, CPU, tiny).

Helpers (reach them through the fixtures ``dataset_writer`` and ``channel_classifier``):

* :func:`write_image_dataset` writes a tiny coloured-square image dataset with a
  planted failure mode (as a manifest or an ImageFolder tree) and returns its rows.
* :class:`ChannelClassifier` is a deterministic "audited model": it predicts the
  class whose RGB channel is brightest, so planted images (tinted with the next
  class's channel) are misclassified.

Fixtures:

* ``tiny_clip`` (session): a randomly initialised open_clip ViT (32 px input,
  width 32, 1 layer, 32-d embeddings) saved as an open_clip config ``.json`` plus a
  state_dict checkpoint: ``load_clip(str(tiny_clip.config), checkpoint=tiny_clip.checkpoint)``
  or ``--clip CONFIG --clip-checkpoint CK`` exercise the real loading path.
* ``image_dataset`` (function): a fresh manifest dataset in ``tmp_path`` (3 classes
  x 24 train + 24 val images); returns :class:`ImageData`.
* ``channel_classifier`` / ``channel_classifier_ts`` (session): :class:`ChannelClassifier`
  as a module / saved as TorchScript.
* ``dataset_writer``: :func:`write_image_dataset`, for other layouts.
* ``cli_env``: environment for ``subprocess`` calls of the CLI (1 thread, offline).
* ``no_network``: any attempt to open a socket fails the test.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

CLASSES = ("ant", "bee", "cat")

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _torch_one_thread():
    import torch

    torch.set_num_threads(1)
    return torch


@dataclass(frozen=True)
class TinyClip:
    """A tiny open_clip model on disk: ``config`` (.json) and ``checkpoint`` (state_dict)."""

    config: Path
    checkpoint: Path

    @property
    def name(self) -> str:
        """The open_clip model name the config registers (its file stem)."""
        return self.config.stem


def make_tiny_clip(folder: Path, *, seed: int = 0) -> TinyClip:
    """Write :data:`TINY_CLIP_CONFIG` and a seeded random state_dict into ``folder``."""
    torch = _torch_one_thread()
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "tiny-test-clip.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG), encoding="utf-8")
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-test-clip", pretrained=None)
    checkpoint = folder / f"tiny-test-clip-{seed}.pt"
    torch.save(model.state_dict(), checkpoint)
    return TinyClip(config=config, checkpoint=checkpoint)


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (``tests/report/cdp.py``) for the report and review browser tests;
    skipped when absent, except under CI=true where it must exist."""
    sys.path.insert(0, str(Path(__file__).parent / "report"))
    from cdp import Chromium, find_chromium

    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "CI=true but no Chromium was found; install it "
                "(apt-get install -y chromium) or set CHROMIUM=/path/to/chromium"
            )
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    browser = Chromium.launch(exe)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    """A tiny random open_clip model saved as config .json + checkpoint (see module doc)."""
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


# --------------------------------------------------------------------------- images

#: RGB of each class's images; planted images get the next class's colour mixed in.
_BASE = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]], dtype=np.float64)


def write_image_dataset(
    root: Path,
    *,
    n_per_class: int = 24,
    splits: tuple[str, ...] = ("train", "val"),
    planted_rate: float = 0.3,
    size: int = 32,
    layout: str = "manifest",
    seed: int = 0,
) -> list[dict]:
    """Write coloured-square PNGs with a planted failure mode.

    Class ``c`` images are dominated by RGB channel ``c``. A ``planted_rate``
    fraction per class and split is dominated by channel ``c+1`` instead and carries
    a white stripe (``planted=True``): :class:`ChannelClassifier` gets exactly those
    wrong.

    Parameters
    ----------
    layout : {"manifest", "folder"}
        ``"manifest"``: ``root/img/<split>_<class>_<k>.png`` plus ``root/manifest.csv``
        with columns path, label, split, planted, brightness (metadata).
        ``"folder"``: ``root/<split>/<class>/<k>.png`` (no manifest).

    Returns
    -------
    list of dict
        One row per image (path relative to ``root``, label name, split, planted,
        brightness), in manifest order.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = []
    n_planted = round(planted_rate * n_per_class)
    for split in splits:
        for c, name in enumerate(CLASSES):
            for k in range(n_per_class):
                planted = k < n_planted
                colour = _BASE[(c + 1) % 3] if planted else _BASE[c]
                bright = float(rng.uniform(0.7, 1.0))
                img = colour * bright + rng.normal(0, 12, size=(size, size, 3))
                if planted:
                    img[size // 2 - 2 : size // 2 + 2, :, :] = 255.0
                img = np.clip(img, 0, 255).astype(np.uint8)
                if layout == "folder":
                    rel = f"{split}/{name}/{k:03d}.png"
                else:
                    rel = f"img/{split}_{name}_{k:03d}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / rel)
                rows.append(
                    {"path": rel, "label": name, "split": split, "planted": planted,
                     "brightness": round(bright, 4)}
                )  # fmt: skip
    if layout == "manifest":
        import pandas as pd

        pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return rows


@dataclass(frozen=True)
class ImageData:
    """A test dataset on disk: ``root``, ``manifest`` (csv) and its ``rows``."""

    root: Path
    manifest: Path
    rows: list


@pytest.fixture
def image_dataset(tmp_path: Path) -> ImageData:
    """Fresh manifest dataset: 3 classes x (24 train + 24 val) coloured squares."""
    root = tmp_path / "data"
    rows = write_image_dataset(root)
    return ImageData(root=root, manifest=root / "manifest.csv", rows=rows)


# --------------------------------------------------------------------------- audited models


def _channel_classifier_class():
    torch = _torch_one_thread()

    class ChannelClassifier(torch.nn.Module):
        """Logits = 10 x mean of each RGB channel: predicts the brightest channel's class."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 10.0 * x.mean(dim=(2, 3))

    return ChannelClassifier


@pytest.fixture
def channel_classifier():
    """A fresh :class:`ChannelClassifier` module (see the module docstring)."""
    return _channel_classifier_class()()


@pytest.fixture
def dataset_writer():
    """The :func:`write_image_dataset` function, for tests that need their own layout."""
    return write_image_dataset


@pytest.fixture(scope="session")
def channel_classifier_ts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:class:`ChannelClassifier` saved with ``torch.jit.script``; returns the file."""
    torch = _torch_one_thread()
    import warnings

    path = tmp_path_factory.mktemp("models") / "channel.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.jit.script(_channel_classifier_class()()).save(str(path))
    return path


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for running ``python -m failscope`` in a subprocess: one thread, offline."""
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[1])
    env.update(
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([repo, env.get("PYTHONPATH", "")]),
    )  # fmt: skip
    return env


PYTHON = sys.executable


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
