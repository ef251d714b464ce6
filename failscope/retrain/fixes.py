"""Which fix each annotated slice gets: the plan ``failscope retrain`` follows.

A person's verdict on a slice (``RUN/annotations.json``, see :mod:`failscope.review`)
picks its fix:

``core``
    a real but under-served subgroup: slice-aware retraining on the core slices only
    (``core-sbl``, ``core-moa``), and data selection (``failscope select``);
``spurious``
    the model predicts from the wrong cue: core-risk-style training of the backbone
    (``spurious-crm``, :mod:`failscope.retrain.crm`);
``noisy``
    the training labels are wrong: relabelling (``noisy-relabel``, or dropping with
    ``noisy="drop"``, :mod:`failscope.retrain.relabel`);
``not-a-failure``
    excluded from every fix, and from the slices SBL/MoA and upweighting train on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from failscope._validation import fail
from failscope.run.schema import Annotations

__all__ = ["FIX_METHODS", "FIX_OF_LABEL", "FixPlan", "fix_plan"]

#: The retrain methods that carry out an annotation, by label.
FIX_OF_LABEL: dict[str, tuple[str, ...]] = {
    "core": ("core-sbl", "core-moa"),
    "spurious": ("spurious-crm",),
    "noisy": ("noisy-relabel",),
}
FIX_METHODS: tuple[str, ...] = tuple(m for ms in FIX_OF_LABEL.values() for m in ms)


@dataclass(frozen=True)
class FixPlan:
    """Slice ids per annotation label, and where the annotations came from.

    Attributes
    ----------
    source : str or None
        The annotation file (None: no annotations).
    version : int
        Its version.
    slices : dict of str to tuple of str
        Label -> annotated slice ids, in (class, rank) order.
    """

    source: str | None = None
    version: int = 0
    slices: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def of(self, label: str) -> tuple[str, ...]:
        """The slices annotated ``label``."""
        return self.slices.get(label, ())

    @property
    def excluded(self) -> tuple[str, ...]:
        """Slices annotated as not a failure: no fix and no training signal."""
        return self.of("not-a-failure")

    def applicable(self) -> list[str]:
        """The fix methods that have annotated slices, in :data:`FIX_METHODS` order."""
        return [m for label, ms in FIX_OF_LABEL.items() if self.of(label) for m in ms]

    def slices_for(self, method: str) -> tuple[str, ...]:
        """The slices fix ``method`` works on; a one-line error when there are none."""
        label = next(lab for lab, ms in FIX_OF_LABEL.items() if method in ms)
        ids = self.of(label)
        if not ids:
            where = self.source or "RUN/annotations.json (there is none)"
            raise fail(
                f"method {method} needs slices annotated {label!r}, and {where} has none; "
                "annotate some with `failscope review` or failscope.annotate"
            )
        return ids

    def to_json(self) -> dict[str, Any]:
        slices = {k: list(v) for k, v in self.slices.items()}
        return {"source": self.source, "version": self.version, "slices": slices}


def fix_plan(run: Any, annotations: Any = None) -> FixPlan:
    """The fix plan of ``run``.

    Parameters
    ----------
    run : Run
    annotations : path, Annotations, False or None
        None: ``RUN/annotations.json`` when it exists; a path: that file (it must belong
        to the run); an :class:`~failscope.run.schema.Annotations`: used as is (checked
        against the run); False: no annotations.
    """
    from failscope.review.annotations import check_annotations, read_annotations
    from failscope.run import ANNOTATIONS_JSON

    if annotations is False:
        return FixPlan()
    if isinstance(annotations, Annotations):
        if annotations.run_id != run.info.run_id:
            raise fail("the annotations were written for another run (run_id differs)")
        ann, source = check_annotations(run, annotations, where="annotations"), "given"
    elif annotations is not None:
        ann, source = read_annotations(run, annotations), os.fspath(annotations)
    else:
        if not (run.path / ANNOTATIONS_JSON).is_file():
            return FixPlan()
        ann, source = read_annotations(run), str(run.path / ANNOTATIONS_JSON)
    order = {s.id: i for i, s in enumerate(run.slices)}
    slices: dict[str, list[str]] = {}
    for a in sorted(ann.annotations, key=lambda a: order[a.slice_id]):
        slices.setdefault(a.label, []).append(a.slice_id)
    return FixPlan(
        source=source, version=ann.version, slices={k: tuple(v) for k, v in slices.items()}
    )
