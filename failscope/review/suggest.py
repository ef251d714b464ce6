"""Suggested labels: unannotated slices that resemble annotated ones.

Each slice is summarised by one unit vector in embedding space: the mean of its
members' L2-normalised embeddings minus the mean of its class's, on the fitting
split (what sets the slice apart from its class, as the centroid captions use).
An unannotated slice gets the label of its nearest annotated slices (cosine
similarity, the ``k`` nearest with similarity at least ``min_similarity``, votes
weighted by similarity), once ``min_annotated`` slices are annotated. This is how
AttributionScanner propagates its spuriousness score to similar slices; a
suggestion is only shown, never saved, unless the person accepts it.

A slice whose training labels moved to another class
(:func:`failscope.regions.label_shift`) is suggested *noisy labels* from the start,
with the counts behind it as the reason (:func:`moved_label_suggestions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from failscope.run import Run
from failscope.run.schema import Annotations

__all__ = ["Suggestion", "moved_label_suggestions", "slice_vectors", "suggest_labels"]


@dataclass(frozen=True)
class Suggestion:
    """A suggested label for one slice and the annotated slices behind it.

    Attributes
    ----------
    label : str
    support : float
        Share of the neighbours' similarity-weighted votes for ``label``, in (0, 1].
    neighbours : tuple of (str, float)
        The annotated slices voted with (slice id, cosine similarity), nearest first.
    reason : str
        For a suggestion not made by neighbours, what it rests on ("" otherwise).
    """

    label: str
    support: float
    neighbours: tuple[tuple[str, float], ...]
    reason: str = ""


def slice_vectors(run: Run) -> dict[str, np.ndarray]:
    """Slice id -> unit vector (members' mean minus class mean, fitting split).

    Slices without members on the fitting split, or whose mean equals their class's,
    are left out.
    """
    ex = run.examples
    fit = ex["split"].to_numpy().astype(str) == run.fit_split
    labels = ex["label"].to_numpy()
    emb = run.embeddings()
    scores = np.asarray(run.slice_score_matrix())
    out: dict[str, np.ndarray] = {}
    for c in sorted({s.class_index for s in run.slices}):
        rows = np.flatnonzero(fit & (labels == c))
        if not len(rows):
            continue
        x = np.asarray(emb[rows], dtype=np.float64)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        centre = x.mean(axis=0)
        for s in run.slices_of(c):
            member = s.rule.passes(scores[rows, s.column])
            if not member.any():
                continue
            v = x[member].mean(axis=0) - centre
            norm = float(np.linalg.norm(v))
            if norm > 1e-9:
                out[s.id] = v / norm
    return out


def suggest_labels(
    vectors: dict[str, np.ndarray],
    annotations: Annotations,
    *,
    k: int = 3,
    min_annotated: int = 2,
    min_similarity: float = 0.3,
) -> dict[str, Suggestion]:
    """Suggested labels for the unannotated slices of ``vectors``.

    Parameters
    ----------
    vectors : dict of str to ndarray of shape (d,)
        From :func:`slice_vectors`.
    annotations : Annotations
    k : int, default=3
        Neighbours that vote.
    min_annotated : int, default=2
        No suggestion before this many slices are annotated.
    min_similarity : float, default=0.3
        Annotated slices less similar than this do not vote.

    Returns
    -------
    dict of str to Suggestion
        Only slices with at least one voting neighbour.
    """
    labelled = {a.slice_id: a.label for a in annotations.annotations if a.slice_id in vectors}
    if len(labelled) < min_annotated:
        return {}
    ids = list(labelled)
    ref = np.stack([vectors[i] for i in ids])
    out: dict[str, Suggestion] = {}
    for sid, v in vectors.items():
        if sid in labelled:
            continue
        sim = ref @ v
        order = [j for j in np.argsort(-sim)[:k] if sim[j] >= min_similarity]
        if not order:
            continue
        votes: dict[str, float] = {}
        for j in order:
            votes[labelled[ids[j]]] = votes.get(labelled[ids[j]], 0.0) + float(sim[j])
        best = max(votes, key=votes.__getitem__)
        out[sid] = Suggestion(
            label=best,
            support=round(votes[best] / sum(votes.values()), 3),
            neighbours=tuple((ids[j], round(float(sim[j]), 3)) for j in order),
        )
    return out


def moved_label_suggestions(run: Run) -> dict[str, Suggestion]:
    """*Noisy labels* for every slice whose training labels moved to a confusion.

    Returns
    -------
    dict of str to Suggestion
        Empty when the run has no train split (nothing to compare).
    """
    from failscope.regions import moved_label_slices

    names = run.class_names
    out: dict[str, Suggestion] = {}
    for sid, shift in moved_label_slices(run).items():
        to = ", ".join(str(names[j]) for j in shift.confusions)
        reason = (
            f"training labels moved: its region lacks {shift.missing:.0f} training "
            f"examples of its class and holds {shift.extra:.0f} more labelled {to}"
        )
        out[sid] = Suggestion("noisy", 1.0, (), reason)
    return out
