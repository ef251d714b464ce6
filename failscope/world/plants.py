"""Planted failure modes: the grammar ``KIND:CLASS:FAMILY=VALUE:RATE``.

Kinds
-----
``spurious:7:color=red:0.95``
    In train, a fraction ``RATE`` of the 7s are red (exactly), and in every
    other class red has probability ``(1 - RATE) / (k - 1)`` (``k`` values in the
    family), so red is rare elsewhere. The model learns "red means 7".
``rare:3:size=small:0.02``
    In train, small 3s are exactly ``RATE`` of the 3s (other classes uniform).
``noisy:5:texture=dotted:0.7``
    In train, attributes are uniform and a fraction ``RATE`` of the dotted 5s
    (exactly, rounded) carry the label :data:`NOISY_TARGET` ``[5]`` instead.

Val and test attributes are uniform and their labels are clean.

Slice semantics
---------------
Every planted slice is a subset of one class, the spec's ``CLASS`` (by the
clean label). For ``rare`` and ``noisy`` the members are the examples of the
class that have ``FAMILY == VALUE`` (``polarity="present"``): that is where the
model fails. For ``spurious`` the model fails on the examples of the class that
**lack** the value (the 7s that are not red: the model leans on red to say 7),
so the members are ``label == CLASS and FAMILY != VALUE``
(``polarity="absent"``); the value word then belongs at the *success* end of
the class's failure direction, not the failure end. (Red examples of other
classes are also pulled towards 7, but they are spread over nine classes and
are not one class's slice.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from failscope._validation import fail
from failscope.world.attributes import CLASS_NAMES, FAMILIES

__all__ = [
    "KINDS",
    "NOISY_TARGET",
    "Plant",
    "parse_plant",
    "parse_plants",
    "plant_membership",
]

KINDS: tuple[str, ...] = ("spurious", "rare", "noisy")
#: The wrong label given to noisy examples of each class (a look-alike digit).
NOISY_TARGET: dict[int, int] = {0: 6, 1: 7, 2: 7, 3: 8, 4: 9, 5: 6, 6: 5, 7: 1, 8: 3, 9: 4}


@dataclass(frozen=True)
class Plant:
    """One planted failure mode.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    cls : int
        Class index, 0-9.
    family : str
        Attribute family, a key of ``FAMILIES``.
    value : str
        A value word of ``family``.
    rate : float
        In (0, 1); meaning depends on ``kind`` (see the module docstring).
    """

    kind: str
    cls: int
    family: str
    value: str
    rate: float

    @property
    def name(self) -> str:
        """Identifier such as ``"rare_3_size_small"`` (column ``planted_<name>``)."""
        return f"{self.kind}_{self.cls}_{self.family}_{self.value}"

    @property
    def polarity(self) -> str:
        """``"absent"`` for spurious plants, else ``"present"``."""
        return "absent" if self.kind == "spurious" else "present"

    @property
    def spec(self) -> str:
        """The spec string that parses back to this plant."""
        return f"{self.kind}:{self.cls}:{self.family}={self.value}:{self.rate:g}"

    @property
    def noisy_target(self) -> int | None:
        """The wrong label of noisy members, or ``None`` for other kinds."""
        return NOISY_TARGET[self.cls] if self.kind == "noisy" else None

    def truth(self) -> dict[str, object]:
        """JSON-ready ground-truth entry for ``truth.json``."""
        entry: dict[str, object] = {"name": self.name, "spec": self.spec, **asdict(self)}
        entry["class"] = entry.pop("cls")
        entry["class_name"] = CLASS_NAMES[self.cls]
        entry["polarity"] = self.polarity
        entry["column"] = f"planted_{self.name}"
        op = "!=" if self.polarity == "absent" else "=="
        entry["members"] = f"true_label == {self.cls} and {self.family} {op} {self.value!r}"
        entry["noisy_target"] = self.noisy_target
        return entry


def parse_plant(spec: str) -> Plant:
    """Parse ``KIND:CLASS:FAMILY=VALUE:RATE`` into a :class:`Plant`.

    Raises
    ------
    ValueError
        One line naming the bad part and the allowed values.
    """
    if not isinstance(spec, str):
        raise TypeError(f"plant spec must be a str, got {type(spec).__name__}")
    parts = spec.strip().split(":")
    if len(parts) != 4:
        raise fail(
            f"plant {spec!r} has {len(parts)} ':'-separated fields, expected 4: "
            "KIND:CLASS:FAMILY=VALUE:RATE, e.g. 'rare:3:size=small:0.02'"
        )
    kind, cls_text, assignment, rate_text = (p.strip() for p in parts)
    if kind not in KINDS:
        raise fail(f"plant {spec!r}: unknown kind {kind!r}; allowed kinds: {', '.join(KINDS)}")
    if cls_text not in CLASS_NAMES:
        raise fail(f"plant {spec!r}: class {cls_text!r} out of range; allowed classes: 0-9")
    if assignment.count("=") != 1:
        raise fail(f"plant {spec!r}: {assignment!r} is not FAMILY=VALUE; expected e.g. 'color=red'")
    family, value = (p.strip() for p in assignment.split("="))
    if family not in FAMILIES:
        raise fail(
            f"plant {spec!r}: unknown family {family!r}; allowed families: {', '.join(FAMILIES)}"
        )
    if value not in FAMILIES[family]:
        raise fail(
            f"plant {spec!r}: unknown value {value!r} for family {family!r}; "
            f"allowed values: {', '.join(FAMILIES[family])}"
        )
    try:
        rate = float(rate_text)
    except ValueError:
        raise fail(
            f"plant {spec!r}: rate {rate_text!r} is not a float; allowed: a float in (0, 1)"
        ) from None
    if not (math.isfinite(rate) and 0.0 < rate < 1.0):
        raise fail(f"plant {spec!r}: rate {rate_text!r} is outside the allowed range (0, 1)")
    return Plant(kind=kind, cls=int(cls_text), family=family, value=value, rate=rate)


def parse_plants(specs: str | Plant | list[str | Plant] | tuple[str | Plant, ...]) -> list[Plant]:
    """Parse several specs (or pass :class:`Plant` objects through) and check they combine.

    Two plants may not share a class and family, and two spurious plants may not
    use the same family value.
    """
    if isinstance(specs, (str, Plant)):
        specs = [specs]
    plants = [s if isinstance(s, Plant) else parse_plant(s) for s in specs]
    seen: dict[tuple[int, str], Plant] = {}
    for plant in plants:
        key = (plant.cls, plant.family)
        if key in seen:
            raise fail(
                f"plants {seen[key].spec!r} and {plant.spec!r} both plant class {plant.cls} "
                f"family {plant.family!r}; allowed: at most one plant per class and family"
            )
        seen[key] = plant
    spurious_values = [(p.family, p.value) for p in plants if p.kind == "spurious"]
    if len(spurious_values) != len(set(spurious_values)):
        raise fail("two spurious plants use the same FAMILY=VALUE; allowed: distinct values")
    return plants


def plant_membership(
    plant: Plant, true_labels: np.ndarray, attributes: dict[str, np.ndarray]
) -> np.ndarray:
    """Boolean (n,) mask of the planted slice's members (see the module docstring)."""
    in_class = np.asarray(true_labels) == plant.cls
    has = np.asarray(attributes[plant.family], dtype=object) == plant.value
    return in_class & (~has if plant.polarity == "absent" else has)
