"""Fixtures for the caption tests: a fake text encoder and a small synthetic run."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

D = 32
CLASSES = ["cat", "dog", "8"]


def _random_unit(word: str, d: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha1(word.encode()).digest()[:4], "little")
    v = np.random.default_rng(seed).normal(size=d)
    return v / np.linalg.norm(v)


def _off_gap(v: np.ndarray) -> np.ndarray:
    g = _random_unit("__text_gap__", len(v))
    return v - (v @ g) * g


def word_vector(word: str, d: int = D) -> np.ndarray:
    """A fixed random unit vector per word (seeded by its hash), orthogonal to the gap."""
    v = _off_gap(_random_unit(word, d))
    return v / np.linalg.norm(v)


#: The "modality gap": a component every caption shares and no image has.
GAP = 3.0 * _random_unit("__text_gap__", D)
STOP = {"a", "an", "photo", "of", "on", "in", "the", "background"}


class FakeEncoder:
    """Bag-of-words text encoder: normalize(GAP + sum of content-word vectors).

    Counts how many captions it was asked to encode.
    """

    identity = "fake-bow-encoder/v1"

    def __init__(self, d: int = D) -> None:
        self.d = d
        self.n_encoded = 0
        self.calls = 0

    def encode_text(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        self.calls += 1
        self.n_encoded += len(texts)
        out = np.empty((len(texts), self.d), dtype=np.float32)
        for i, t in enumerate(texts):
            v = GAP.copy()
            for w in re.findall(r"[\w-]+", t.lower()):
                if w not in STOP:
                    v = v + word_vector(w, self.d)
            out[i] = v / np.linalg.norm(v)
        return out


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


def make_run(
    path: Path,
    *,
    failure_word: dict[str, str],
    n_per_class: int = 240,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "val", "test"),
    world: bool = False,
    clean_classes: tuple[str, ...] = (),
    success_word: dict[str, str] | None = None,
    base_error: float = 0.05,
) -> Path:
    """Write a run directory in which class ``c`` fails on images with ``failure_word[c]``.

    Images are ``normalize(class vector + attribute word vectors + noise)``; each image
    gets one random word of each of two families; the model is wrong on 95% of images
    with the class's failure word, never on images with its ``success_word`` and on
    ``base_error`` of the others (none in ``clean_classes``).
    """
    from runbuilder import build_run

    from failscope.run.schema import WorldInfo

    rng = np.random.default_rng(seed)
    colors = ["red", "green", "blue", "yellow"]
    grounds = ["striped", "plain", "wavy", "dotted"]
    embs, labels, preds, split, color, ground = [], [], [], [], [], []
    k = len(CLASSES)
    for c, name in enumerate(CLASSES):
        for i in range(n_per_class):
            col = colors[rng.integers(len(colors))]
            gr = grounds[rng.integers(len(grounds))]
            x = (
                1.5 * word_vector(name)
                + word_vector(col)
                + word_vector(gr)
                + 0.35 * _off_gap(rng.normal(size=D))
            )
            embs.append(x / np.linalg.norm(x))
            has = failure_word.get(name) in (col, gr)
            easy = (success_word or {}).get(name) in (col, gr)
            p_wrong = 0.95 if has else (0.0 if easy else base_error)
            wrong = rng.random() < p_wrong and name not in clean_classes
            labels.append(c)
            preds.append((c + 1) % k if wrong else c)
            split.append(splits[i % len(splits)])
            color.append(col)
            ground.append(gr)
    fit_split = "val" if "val" in splits else splits[0]
    run = build_run(
        path, embeddings=np.asarray(embs, dtype=np.float32), labels=labels, predictions=preds,
        splits=split, class_names=CLASSES, metadata={"color": color, "ground": ground},
        fit_split=fit_split, seed=0,
    )  # fmt: skip
    if world:
        run.update_info(world=WorldInfo(seed=seed, plants=(), key="test", root="none"))
    return path


@pytest.fixture(scope="session")
def run_factory():
    """The :func:`make_run` writer, for tests that need a run directory."""
    return make_run
