"""Planted multi-mode runs for the report's tests and benchmark, built by the real stages.

:func:`make_run` builds embeddings in which each class fails in up to three ways
(modes), runs the real ``discover`` on them (``tests/runbuilder.build_run``) with
:class:`ModeSlicer`, a tiny slicer that finds one slice per mode (so a class has
K > 1 slices; the third mode has no more errors than the rest of its class and so
comes out weak), then, as asked, the real caption stage (with the caption tests'
bag-of-words ``FakeEncoder``), ``evaluate_run`` on a ``truth.json`` written through
the typed :class:`~failscope.run.schema.Truth`, and ``retrain_run``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from failscope.run.schema import Support
from failscope.slicers import FittedSlice, Slicer, add_slicer
from failscope.slicers.base import enrichment_p, rank_slices, slice_stats

_TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TESTS))

from runbuilder import build_run, write_pngs  # noqa: E402


def _caption_fakes() -> Any:
    """tests/caption/conftest.py (its FakeEncoder and word vectors), under its own name."""
    name = "caption_test_fakes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _TESTS / "caption" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


FakeEncoder = _caption_fakes().FakeEncoder
word_vector = _caption_fakes().word_vector
D = _caption_fakes().D

#: The word each mode's images carry; ModeSlicer's slice k is "along word k".
MODE_WORDS = ("red", "snow", "striped")
#: Phrases of the test vocabulary (the three mode words among others).
PHRASES = (
    "on a red background",
    "in the snow",
    "with a striped pattern",
    "on a blue background",
    "at night",
    "in the rain",
    "with a dotted pattern",
    "up close",
)
#: Error rates: modes 0 and 1 fail, mode 2 fails no more than the rest of its class.
ERROR_RATES = (0.85, 0.7, 0.08)
BASE_ERROR = 0.08
SPLITS = ("val", "test", "val", "train", "val", "test")

#: Class names and captions that try to inject HTML or JavaScript into the report.
HOSTILE_NAMES = [
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned = 2">',
    "fish &amp; chips",
    "plain",
]
HOSTILE_CAPTIONS = {
    0: ["<script>window.__pwned = 3</script> on a red background", "a 'quoted' & <b>bold</b> one"],
    1: ['"><svg onload="window.__pwned = 4">', "$x^2$ \\ back\\slash"],
    2: ["<!-- comment --> ]]> </details></section>", "plain caption"],
}
COLORS = ["red", "green", "blue", "black"]


class ModeSlicer(Slicer):
    """Test slicer: slice k of a class is its examples far along ``MODE_WORDS[k]``.

    The score of slice k is the embedding's dot product with the word's vector; a
    member scores above ``cutoff``. A mode with fewer than ``min_size`` fitting
    members gives no slice; its support is the one-sided Fisher test of the errors.
    """

    name: ClassVar[str] = "test-modes"
    score_description: ClassVar[str] = "dot product with the mode word's vector"

    def __init__(
        self,
        *,
        cutoff: float = 0.75,
        min_size: int = 2,
        min_examples: int = 10,
        alpha: float = 0.05,
    ) -> None:
        self.cutoff = cutoff
        self.min_size = min_size
        self.min_examples = min_examples
        self.alpha = alpha

    def _validate_params(self) -> None:  # discover calls it before fitting
        """Nothing to check: the test builds its own slicer."""

    @staticmethod
    def _vectors() -> np.ndarray:
        return mode_vectors()

    def fit(self, X, labels, predictions, *, reference=None, n_classes=None) -> ModeSlicer:
        y = np.asarray(labels)
        pred = np.asarray(predictions)
        proj = np.asarray(X) @ self._vectors().T
        self.n_classes_ = int(n_classes or y.max() + 1)
        self.skip_reasons_, self.slices_, self.modes_ = {}, [], {}
        for c in range(self.n_classes_):
            sel = y == c
            wrong = pred[sel] != c
            if sel.sum() < self.min_examples or not wrong.any():
                self.skip_reasons_[c] = (
                    f"only {int(sel.sum())} examples" if sel.sum() < self.min_examples
                    else "the model makes no errors on this class"
                )  # fmt: skip
                continue
            found = []
            for k in range(len(MODE_WORDS)):
                member = proj[sel, k] > self.cutoff
                if member.sum() < self.min_size:
                    continue
                stats = slice_stats(member, wrong, pred[sel])
                p = enrichment_p(
                    stats["n_errors_in"], stats["size"], stats["n_errors_class"], stats["n_class"]
                )
                support = Support(
                    test="one-sided Fisher test (test slicer)",
                    p_value=p,
                    alpha=self.alpha,
                    enrichment_p=p,
                )
                found.append(
                    FittedSlice(class_index=c, rank=k, cutoff=self.cutoff, strict=True,
                                threshold=f"dot>{self.cutoff:g}", support=support,
                                metrics={"mode": float(k)}, **stats)
                )  # fmt: skip
            ranked = rank_slices(found)
            self.slices_ += ranked
            self.modes_[c] = [int(s.metrics["mode"]) for s in ranked]
        self.n_columns_ = max((len(m) for m in self.modes_.values()), default=1)
        return self

    def score(self, X, labels) -> np.ndarray:
        y = np.asarray(labels)
        proj = np.asarray(X) @ self._vectors().T
        out = np.full((len(y), self.n_columns_), np.nan, dtype=np.float32)
        for c, modes in self.modes_.items():
            rows = y == c
            out[np.ix_(rows, np.arange(len(modes)))] = proj[rows][:, modes]
        return out

    def _state(self):
        from failscope.slicers.directions import _slice_meta

        meta = {
            "n_classes": self.n_classes_,
            "skip": {str(c): r for c, r in self.skip_reasons_.items()},
            "modes": {str(c): m for c, m in self.modes_.items()},
            "slices": [_slice_meta(s) for s in self.slices_],
            "n_columns": self.n_columns_,
        }
        return meta, {}

    def _restore(self, meta, arrays) -> None:
        from failscope.slicers.directions import _slice_from_meta

        self.n_classes_ = meta["n_classes"]
        self.skip_reasons_ = {int(c): r for c, r in meta["skip"].items()}
        self.modes_ = {int(c): list(m) for c, m in meta["modes"].items()}
        self.slices_ = [_slice_from_meta(m, None) for m in meta["slices"]]
        self.n_columns_ = meta["n_columns"]


add_slicer(ModeSlicer.name, ModeSlicer)


def mode_vectors() -> np.ndarray:
    """Orthonormal directions of the modes (Gram-Schmidt on the mode words' vectors)."""
    q, _ = np.linalg.qr(np.stack([word_vector(w) for w in MODE_WORDS]).T)
    q = q.T * np.sign(np.diag(q.T @ np.stack([word_vector(w) for w in MODE_WORDS]).T))[:, None]
    return q.astype(np.float32)


def _mode_fractions(c: int) -> tuple[float, float, float]:
    """How much of class ``c`` is in each mode: mode 0 varies with c (so severities differ)."""
    return (0.2 + 0.15 * ((c * 7) % 5) / 4, 0.18, 0.2)


def make_data(
    *,
    n_classes: int,
    n_per_class: int,
    skipped_classes: Sequence[int] = (),
    empty_classes: Sequence[int] = (),
    class_names: Sequence[str],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Embeddings, labels, predictions, splits and mode of every example.

    ``mode`` is -1 outside the modes. Classes in ``skipped_classes`` have no errors
    (the slicer skips them); those in ``empty_classes`` have errors but no mode.
    """
    rng = np.random.default_rng(seed)
    n = n_classes * n_per_class
    labels = np.repeat(np.arange(n_classes), n_per_class)
    mode = np.full(n, -1)
    for c in range(n_classes):
        if c in empty_classes or c in skipped_classes:
            continue
        u = rng.random(n_per_class)
        edges = np.cumsum(_mode_fractions(c))
        m = np.searchsorted(edges, u, side="right")
        mode[labels == c] = np.where(m < 3, m, -1)
    q = mode_vectors()
    cls_vec = np.stack([word_vector(str(name)) for name in class_names])
    cls_vec -= (cls_vec @ q.T) @ q  # no class sits along a mode
    x = cls_vec[labels] + 0.15 * rng.normal(size=(n, D))
    x[mode >= 0] += 1.5 * q[mode[mode >= 0]]
    p_wrong = np.where(mode >= 0, np.take(ERROR_RATES, np.maximum(mode, 0)), BASE_ERROR)
    wrong = rng.random(n) < p_wrong
    wrong[np.isin(labels, list(skipped_classes))] = False
    preds = np.where(wrong, (labels + 1) % n_classes, labels)
    splits = np.array([SPLITS[i % len(SPLITS)] for i in range(n)])
    return {"embeddings": x.astype(np.float32), "labels": labels, "predictions": preds,
            "splits": splits, "mode": mode}  # fmt: skip


def make_run(
    path: Path,
    *,
    n_classes: int = 4,
    n_per_class: int = 60,
    class_names: Sequence[str] | None = None,
    skipped_classes: Sequence[int] = (),
    empty_classes: Sequence[int] = (),
    captions: bool = True,
    checks: bool = True,
    caption_overrides: dict[int, list[str]] | None = None,
    retrain: bool = False,
    evaluation: bool = False,
    n_images: int = 24,
    missing_images: int = 0,
    corrupt_images: int = 0,
    skipped_inputs: int = 2,
    warnings: Sequence[str] = (),
    seed: int = 0,
) -> Any:
    """Build a planted multi-mode run at ``path`` with the real stages; return the Run.

    Parameters
    ----------
    n_classes, n_per_class : int
        Classes and examples per class (half in the fitting split ``val``, a third
        in ``test``, the rest in ``train``).
    class_names : sequence of str, optional
        Default ``class-0``...; may be hostile strings.
    skipped_classes, empty_classes : sequence of int
        Classes without errors (skipped by the slicer), classes without a slice.
    captions, checks : bool
        Run ``caption_run`` (with the fake encoder and :data:`PHRASES`), with checks.
    caption_overrides : dict, optional
        ``{class: [texts]}`` replacing the first failure captions of the class's
        rank-0 slice (and their checks' texts), written with ``Run.save_slices``.
    retrain, evaluation : bool
        Run ``retrain_run`` (erm and sbl, 2 epochs, on the embeddings) and
        ``evaluate_run`` on a truth of two plants in class 0 and one in class 1.
    n_images, missing_images, corrupt_images : int
        Distinct PNGs (reused cyclically); the first ``missing_images`` examples of
        each class point at missing files, the next ``corrupt_images`` at a non-image.
    skipped_inputs : int
        Extra examples with NaN embeddings (skipped by discover, listed in run.json).
    warnings : sequence of str
        Written to ``run.json``'s ``warnings``.
    """
    path = Path(path)
    names = [str(s) for s in class_names] if class_names is not None else None
    names = names or [f"class-{c}" for c in range(n_classes)]
    data = make_data(
        n_classes=n_classes, n_per_class=n_per_class, class_names=names,
        skipped_classes=skipped_classes, empty_classes=empty_classes, seed=seed,
    )  # fmt: skip
    folder = path.parent / f"{path.name}-data"
    on_disk = write_pngs(folder, n_images, seed=seed)
    (folder / "corrupt.png").write_bytes(b"this is not a png")
    n = len(data["labels"])
    within = np.arange(n) % n_per_class
    paths = [on_disk[i % len(on_disk)] for i in range(n)]
    for i in np.flatnonzero(within < missing_images + corrupt_images):
        paths[i] = (
            f"missing/nope_{data['labels'][i]}_{within[i]}.png"
            if within[i] < missing_images else "corrupt.png"
        )  # fmt: skip
    metadata = {
        "color": [COLORS[i % len(COLORS)] for i in range(n)],
        "planted_red": (data["mode"] == 0) & (data["labels"] == 0),
        "planted_snow": (data["mode"] == 1) & (data["labels"] == 0),
        "planted_red_1": (data["mode"] == 0) & (data["labels"] == min(1, n_classes - 1)),
    }
    emb = data["embeddings"]
    labels, preds, splits = data["labels"], data["predictions"], data["splits"]
    if skipped_inputs:
        bad = np.full((skipped_inputs, D), np.nan, dtype=np.float32)
        emb = np.concatenate([emb, bad])
        labels = np.concatenate([labels, np.zeros(skipped_inputs, int)])
        preds = np.concatenate([preds, np.zeros(skipped_inputs, int)])
        splits = np.concatenate([splits, np.array(["val"] * skipped_inputs)])
        paths += [f"bad/<b>broken_{i}</b>.png" for i in range(skipped_inputs)]
        metadata = {
            k: list(v) + [v[0] if k == "color" else False] * skipped_inputs
            for k, v in metadata.items()
        }
    run = build_run(path, embeddings=emb, labels=labels, predictions=preds, splits=splits,
                    class_names=names, metadata=metadata, paths=paths, slicer=ModeSlicer.name,
                    seed=seed)  # fmt: skip
    if warnings:
        run.update_info(warnings=tuple(warnings))
    if captions:
        import faiss

        from failscope.caption import caption_run

        # the caption stage searches each class's few images with faiss; on a shared
        # 2-core machine OpenMP's start-up then costs ~5x the search itself
        faiss.omp_set_num_threads(1)

        vocab = folder / "vocab.txt"
        vocab.write_text("\n".join(PHRASES) + "\n", encoding="utf-8")
        caption_run(run, clip=FakeEncoder(), vocab=str(vocab), checks=checks, n_centroid=5)
    if caption_overrides:
        override_captions(run, caption_overrides)
    if evaluation:
        write_truth(run)
        from failscope.evaluate import evaluate_run

        evaluate_run(run)
    if retrain:
        from failscope.retrain.pipeline import retrain_run

        retrain_run(run, methods="erm,sbl", epochs=2, backbone="clip")
    return run


def override_captions(run: Any, texts: dict[int, list[str]]) -> None:
    """Replace the first failure captions of each class's rank-0 slice with ``texts[c]``
    (and the texts of their checks), through ``Run.save_slices``."""
    out = []
    for s in run.slices:
        new = texts.get(s.class_index)
        if new and s.rank == 0 and s.captions is not None:
            old = [c.text for c in s.captions.failure[: len(new)]]
            rename = dict(zip(old, new, strict=False))
            failure = tuple(c.replace(text=rename.get(c.text, c.text)) for c in s.captions.failure)
            checks = s.caption_checks and tuple(
                ch.replace(text=rename.get(ch.text, ch.text)) for ch in s.caption_checks
            )
            s = s.replace(captions=s.captions.replace(failure=failure), caption_checks=checks)
        out.append(s)
    run.save_slices(out)


def write_truth(run: Any) -> None:
    """``truth.json`` of the planted modes (typed :class:`Truth`), owned by the run."""
    from failscope.run import FORMAT_VERSION, TRUTH_JSON, write_json
    from failscope.run.schema import Plant, Truth

    ex = run.examples
    names = run.class_names
    plants = []
    for name, column, c, value, family in (
        ("rare-red <i>bg</i>", "planted_red", 0, "red", "color"),
        ("rare-snow", "planted_snow", 0, "snow", "weather"),
        ("rare-red-1", "planted_red_1", min(1, len(names) - 1), "red", "color"),
    ):
        counts = ex.loc[ex[column], "split"].value_counts()
        plants.append(
            Plant(name=name, spec=f"rare:{c}:{family}={value}:0.2", kind="rare", class_index=c,
                  class_name=names[c], family=family, value=value, rate=0.2, polarity="present",
                  column=column, members=f"{family} is {value}", noisy_target=None,
                  n_members={str(k): int(v) for k, v in counts.items()})
        )  # fmt: skip
    write_json(run.output(TRUTH_JSON), Truth(FORMAT_VERSION, 0, tuple(plants)).to_json())
    run.add_files(TRUTH_JSON)
