"""The built-in world: digit scenes with attributes and planted failure modes.

See :mod:`failscope.world.plants` for the plant grammar and slice semantics,
:mod:`failscope.world.generate` for the on-disk layout, :mod:`failscope.world.clip`
for the world's own CLIP and :mod:`failscope.world.audited` for the model under audit.
Heavy dependencies (torch, open_clip) are imported only when used.
"""

from __future__ import annotations

from failscope._lazy import lazy_exports
from failscope.world.attributes import CLASS_NAMES, FAMILIES, FAMILY_PHRASES, list_attributes
from failscope.world.generate import (
    DEFAULT_SIZES,
    GLYPH_BOX_COLUMNS,
    MANIFEST_COLUMNS,
    SPLITS,
    World,
    generate_world,
    load_world,
    make_world,
)
from failscope.world.plants import KINDS, NOISY_TARGET, Plant, parse_plant, parse_plants
from failscope.world.render import glyph_pools, render_scenes

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_PLANTS",
    "DEFAULT_SIZES",
    "FAMILIES",
    "FAMILY_PHRASES",
    "GLYPH_BOX_COLUMNS",
    "KINDS",
    "MANIFEST_COLUMNS",
    "NOISY_TARGET",
    "SPLITS",
    "Plant",
    "World",
    "generate_world",
    "get_audited_model",
    "glyph_pools",
    "list_attributes",
    "load_audited_model",
    "load_world",
    "load_world_clip",
    "make_world",
    "parse_plant",
    "parse_plants",
    "render_scenes",
]

#: The two plants used by ``failscope demo`` when no ``--plant`` is given: blurry 8s and
#: small 3s are each 2% of their class in train. Both are failures that retraining on the
#: same labels can fix (a ``noisy`` plant cannot be fixed without clean labels) and
#: that do not leak into other classes (a ``spurious`` colour fails in every class and
#: takes over the other plant's caption); see ``benchmarks/retrain_world.py``.
DEFAULT_PLANTS: tuple[str, ...] = ("rare:8:quality=blurry:0.02", "rare:3:size=small:0.02")

_LAZY = {
    "get_audited_model": "failscope.world.audited",
    "load_audited_model": "failscope.world.audited",
    "load_world_clip": "failscope.world.clip",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
