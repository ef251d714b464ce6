"""The fix for a slice annotated *noisy labels*: find its training examples' wrong labels.

A noisy slice of class ``c`` is a kind of example whose training labels are often
wrong: in the world's ``noisy:2:color=yellow:0.9``, 90% of the yellow 2s are labelled
7, so in training they are not even examples of class 2. A slice's **region** is the
training examples of any label that its rule takes in when scored as class ``c``
(``run.slicer().score(embeddings, c)``); its **suspects** are those of the region
whose label is ``c`` or one of its **confusions**, the classes the audited model
predicts for at least :data:`~failscope.regions.CONFUSION_SHARE` of the slice's
misclassified fit-split examples (a model that learned the wrong labels predicts
them; both from :mod:`failscope.regions`). Then:

1. two held-out models are trained, each on the training examples outside a set
   (so their labels cannot teach it): outside the suspects, and outside the whole
   region. By default each is the audited architecture from scratch on the images
   (:func:`backbone_heldout`); in ``head`` mode a fresh linear head on the frozen
   features (:func:`head_heldout`). Neither is right for every slice: on the world's
   navy-background 4s the model that never saw a navy background (the whole region
   left out) gave 21-50 of 176-191 wrong labels back, the one that saw navy images of
   other classes 132-137; on the blurry 8s it is the other way round (196-213 of
   277-286 against 74-113), since a model that saw blurry images of every class but
   1, 3 and 8 learns that blur means another class;
2. per slice, the model kept is the one that calls more of the suspects labelled
   ``c`` (the examples whose label noise spared) ``c``: 0.78 against 0.46 for the
   blurry 8s, 0.89 against 0.68 for the navy 4s (seed 0);
3. a suspect labelled another class that the kept model calls ``c`` is relabelled
   ``c`` (``mode="relabel"``) or dropped (``mode="drop"``). Only towards ``c``: a
   suspect labelled ``c`` is what the noise spared, and moving it away broke 6-198
   right labels per slice and seed in the same measurements;
4. the model is retrained on the corrected training set: the audited model fine-tuned
   on the images (:data:`FINETUNE`), or in ``head`` mode the linear head
   (:mod:`failscope.retrain.pipeline`).

The changes are written to ``RUN/retrain/relabelled.parquet`` for a person to check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from failscope._validation import check_choice
from failscope.regions import confusions, inside
from failscope.retrain.backbone import ImageTrainConfig

logger = logging.getLogger(__name__)

__all__ = [
    "FINETUNE",
    "NOISY_MODELS",
    "NOISY_MODES",
    "SCRATCH",
    "Relabelling",
    "backbone_heldout",
    "find_label_errors",
    "head_heldout",
    "suspects",
]

NOISY_MODES = ("relabel", "drop")
#: Which model disputes labels and is retrained: the whole audited model on images
#: (from scratch without the suspects, then fine-tuned on the corrected labels), or a
#: linear head on its frozen features (cheap, but a backbone trained on the wrong labels
#: keeps them: on the world's yellow 2s it changed 39 of 183 wrong labels, +0 points).
NOISY_MODELS = ("backbone", "head")
#: The held-out model trained from scratch. It must be trained to convergence: with 3
#: epochs at lr 1e-2 its loss was still 1.87 and it scored 34% on the test split of the
#: world's yellow-2 plant (seed 2), so it disputed 189 right labels and fixed none; with
#: 15 epochs at 5e-3 (loss 0.03, about a minute on one CPU thread) 86%, and 77% of the
#: suspects' true labels.
SCRATCH = ImageTrainConfig(epochs=15, lr=5e-3, batch_size=128)
#: The audited model fine-tuned on the corrected labels.
FINETUNE = ImageTrainConfig(epochs=2, lr=2e-3, batch_size=128)


@dataclass(frozen=True)
class Relabelling:
    """The label changes of a noisy-label fix.

    Attributes
    ----------
    rows : ndarray of int
        Rows of ``examples.parquet`` (train split) that change.
    old, new : ndarray of int
        Their labels before and after (``new`` is -1 for a dropped example).
    prob : ndarray of float
        The held-out model's probability of the slice's class.
    slice_id : ndarray of str
        The noisy slice that made each a suspect.
    n_suspects : dict of str to int
        Suspects per slice.
    heldout : dict of str to dict
        Per slice, the held-out model kept (``"suspects"`` or ``"region"``: what it
        was trained without) and each model's agreement with the suspects labelled
        with the slice's class.
    seconds : float
        Time to train the held-out models and predict.
    """

    rows: np.ndarray
    old: np.ndarray
    new: np.ndarray
    prob: np.ndarray
    slice_id: np.ndarray
    n_suspects: dict[str, int]
    heldout: dict[str, dict[str, Any]]
    seconds: float

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` (all rows of examples.parquet) with the changes; -1 = dropped."""
        out = np.array(labels, dtype=np.int64, copy=True)
        out[self.rows] = self.new
        return out

    def frame(self, run: Any, *, mode: str) -> Any:
        """The changes as a table (``relabelled.parquet``)."""
        import pandas as pd

        ex = run.examples
        names = np.asarray(run.class_names, dtype=object)
        return pd.DataFrame(
            {
                "id": ex["id"].to_numpy()[self.rows],
                "path": ex["path"].to_numpy()[self.rows],
                "slice_id": self.slice_id.astype(str),
                "action": mode,
                "old_label": names[self.old],
                "new_label": np.where(self.new >= 0, names[np.maximum(self.new, 0)], None),
                "model_probability": self.prob.astype(np.float32),
            }
        )


def suspects(
    run: Any, slice_ids: Sequence[str], rows: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each noisy slice's region and suspects among ``rows`` (``labels``: every row's).

    Returns the region (a boolean mask over ``rows``: inside any slice's region), the
    suspects (a mask within it) and, per row, the first slice id that took it in as
    a suspect (``""`` for none).
    """
    region = np.zeros(len(rows), dtype=bool)
    mask = np.zeros(len(rows), dtype=bool)
    owner = np.full(len(rows), "", dtype=object)
    for sid in slice_ids:
        within = inside(run, sid, rows)
        classes = [run.slice(sid).class_index, *confusions(run, sid).tolist()]
        taken = within & np.isin(labels[rows], classes) & ~mask
        owner[taken] = sid
        mask |= taken
        region |= within
    return region, mask, owner


def head_heldout(
    features: np.ndarray, labels: np.ndarray, train_config: Any, *, n_classes: int
) -> Any:
    """A held-out model that is a fresh linear head on frozen ``features``."""

    def heldout(keep: np.ndarray, rows: np.ndarray) -> np.ndarray:
        import torch

        from failscope.retrain.sbl import LinearHead
        from failscope.retrain.train import fit_head, predict_logits

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_config.seed)
            head = LinearHead(in_features=features.shape[1], n_classes=n_classes)
        fit_head(head, features[keep], labels[keep], config=train_config)
        logits = torch.from_numpy(predict_logits(head, features[rows]))
        return torch.softmax(logits, dim=1).numpy()

    return heldout


def backbone_heldout(images: Any, labels: np.ndarray, load_module: Any, *, n_classes: int,
                     seed: int) -> Any:  # fmt: skip
    """A held-out model that is the audited architecture trained from scratch on images.

    ``load_module()`` returns a fresh copy of the audited model (its weights are replaced).
    """

    def heldout(keep: np.ndarray, rows: np.ndarray) -> np.ndarray:
        import torch

        from failscope.retrain.backbone import (
            as_classifier,
            predict_images,
            reinitialize,
            train_on_images,
        )

        module = reinitialize(load_module(), seed=seed)
        model = as_classifier(module, n_classes, seed=seed)
        train_on_images(model, images[torch.from_numpy(keep)], labels[keep],
                        config=SCRATCH, seed=seed)  # fmt: skip
        return predict_images(model, images[torch.from_numpy(rows)])

    return heldout


def find_label_errors(
    run: Any,
    slice_ids: Sequence[str],
    *,
    labels: np.ndarray,
    train_rows: np.ndarray,
    heldout: Any,
    mode: str = "relabel",
) -> Relabelling:
    """The training labels of ``slice_ids`` that a model trained without them disputes.

    Parameters
    ----------
    run : Run
    slice_ids : sequence of str
        Slices annotated as noisy.
    labels : ndarray of shape (n_examples,)
        Training labels as given.
    train_rows : ndarray of int
        Rows of the train split.
    heldout : callable
        ``heldout(keep_rows, suspect_rows) -> (n_suspects, C)`` probabilities of a model
        trained on ``keep_rows`` only (:func:`backbone_heldout`, :func:`head_heldout`);
        called twice (without the suspects, without the regions; once when the
        regions hold nothing but the suspects).
    mode : {"relabel", "drop"}, default="relabel"
    """
    check_choice(mode, NOISY_MODES, name="noisy")
    t0 = time.perf_counter()
    region, mask, owner = suspects(run, slice_ids, train_rows, labels)
    sus, owner = train_rows[mask], owner[mask]
    probs = {"suspects": heldout(train_rows[~mask], sus)}
    if (region & ~mask).any():  # else both models would train on the same rows
        probs["region"] = heldout(train_rows[~region], sus)
    old = labels[sus]
    cls = np.array([run.slice(s).class_index for s in owner], dtype=np.int64)
    change = np.zeros(len(sus), dtype=bool)
    prob = np.zeros(len(sus))
    chosen: dict[str, dict[str, Any]] = {}
    for sid in slice_ids:
        own = owner == sid
        c = run.slice(sid).class_index
        spared = own & (old == c)
        agree = {k: float((p[spared].argmax(axis=1) == c).mean()) if spared.any() else 0.0
                 for k, p in probs.items()}  # fmt: skip
        best = max(agree, key=lambda k: agree[k])  # ties: without the suspects only
        chosen[sid] = {"kept": best, **{f"agreement_{k}": round(v, 4) for k, v in agree.items()}}
        p = probs[best]
        change |= own & (old != c) & (p.argmax(axis=1) == c)
        prob[own] = p[own, c]
    new = cls[change] if mode == "relabel" else np.full(int(change.sum()), -1, np.int64)
    counts = {sid: int((owner == sid).sum()) for sid in slice_ids}
    logger.info(
        "noisy slices %s: %d suspects, %d labels disputed (%s)",
        ", ".join(slice_ids), len(sus), int(change.sum()), mode,
    )  # fmt: skip
    return Relabelling(
        rows=sus[change],
        old=old[change],
        new=new.astype(np.int64),
        prob=prob[change],
        slice_id=owner[change].astype(str),
        n_suspects=counts,
        heldout=chosen,
        seconds=time.perf_counter() - t0,
    )
