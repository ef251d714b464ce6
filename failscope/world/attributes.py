"""Attribute families of the built-in world and their colour palettes.

Every value is a plain English word and every word is unique across all
families, so a caption that contains ``"red"`` can only mean the digit colour.
Digit colours (saturated or white) and background colours (dark, muted or
pastel) are disjoint palettes, so a digit never has its background's colour.
"""

from __future__ import annotations

__all__ = [
    "CLASS_NAMES",
    "FAMILIES",
    "FAMILY_DESCRIPTIONS",
    "FAMILY_PHRASES",
    "list_attributes",
]

CLASS_NAMES: tuple[str, ...] = tuple(str(i) for i in range(10))

FAMILIES: dict[str, tuple[str, ...]] = {
    "color": ("red", "green", "blue", "yellow", "white", "purple"),
    "background": ("black", "gray", "brown", "pink", "orange", "navy"),
    "texture": ("plain", "striped", "dotted", "checkered", "wavy"),
    "size": ("small", "medium", "large"),
    "quality": ("sharp", "blurry", "grainy"),
}

FAMILY_DESCRIPTIONS: dict[str, str] = {
    "color": "colour of the digit",
    "background": "colour of the background",
    "texture": "texture of the background",
    "size": "size of the digit",
    "quality": "image quality (blur or sensor noise)",
}

#: How each family's word is phrased in a caption; ``{cls}`` is the class name.
FAMILY_PHRASES: dict[str, str] = {
    "color": "a photo of a {value} {cls}",
    "background": "a photo of a {cls} on a {value} background",
    "texture": "a photo of a {cls} on a {value} background",
    "size": "a photo of a {value} {cls}",
    "quality": "a {value} photo of a {cls}",
}

# RGB palettes (uint8). Minimum RGB distance between any digit colour and any
# background colour is ~100 (yellow vs orange), so the two never coincide.
DIGIT_RGB: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (40, 210, 40),
    "blue": (50, 110, 255),
    "yellow": (245, 235, 40),
    "white": (250, 250, 250),
    "purple": (170, 40, 220),
}
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (120, 120, 120),
    "brown": (105, 60, 20),
    "pink": (250, 150, 185),
    "orange": (255, 135, 0),
    "navy": (0, 0, 100),
}

_ALL_WORDS = [w for values in FAMILIES.values() for w in values]
if len(_ALL_WORDS) != len(set(_ALL_WORDS)) or set(_ALL_WORDS) & set(CLASS_NAMES):
    raise RuntimeError("attribute words must be unique across families")  # pragma: no cover


def list_attributes() -> list[dict[str, object]]:
    """Return the attribute families of the world, one row per family.

    Returns
    -------
    list of dict
        Each row has ``family`` (str), ``description`` (str), ``values``
        (tuple of str) and ``phrase`` (the caption template, str).
    """
    return [
        {
            "family": family,
            "description": FAMILY_DESCRIPTIONS[family],
            "values": values,
            "phrase": FAMILY_PHRASES[family],
        }
        for family, values in FAMILIES.items()
    ]
