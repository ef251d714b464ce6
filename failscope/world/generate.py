"""Generate a world: rendered scenes, a Parquet manifest and the planted truth.

Layout of a world directory::

    ROOT/
      manifest.parquet   one row per example (see :data:`MANIFEST_COLUMNS`)
      truth.json         {"format": 1, "seed": ..., "plants": [Plant.truth(), ...]}
      world.json         {"format": 1, "key": ..., "seed": ..., "plants": [...], "sizes": {...}}
      images/{split}/{index:06d}.png

Each split draws from its own glyph pool (:func:`~failscope.world.render.glyph_pools`),
from its own random stream (``default_rng([seed, split_index])``) and with
balanced classes. Train attributes are uniform except where plants skew them;
val and test attributes are uniform and their labels clean.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from failscope._validation import check_int, fail
from failscope.world.attributes import CLASS_NAMES, FAMILIES
from failscope.world.plants import Plant, parse_plants, plant_membership
from failscope.world.render import glyph_pools, load_glyphs, render_scenes

__all__ = [
    "DEFAULT_SIZES",
    "GLYPH_BOX_COLUMNS",
    "MANIFEST_COLUMNS",
    "SPLITS",
    "World",
    "generate_world",
    "load_world",
    "make_world",
]

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The glyph's bounding box in pixels, ``x1``/``y1`` exclusive (see ``render_scenes``):
#: attribution inside it falls on the digit, outside it on the background.
GLYPH_BOX_COLUMNS: tuple[str, ...] = ("glyph_x0", "glyph_y0", "glyph_x1", "glyph_y1")
DEFAULT_SIZES: dict[str, int] = {"train": 12000, "val": 4000, "test": 4000}
MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "label",
    "split",
    *FAMILIES,
    "glyph_id",
    *GLYPH_BOX_COLUMNS,
    "true_label",
)  # followed by one boolean ``planted_<name>`` column per plant
#: Layout of the world directory's files (``world.json``, ``truth.json``, the manifest).
FORMAT = 1
#: Version of the world's generator and renderer, part of every world's key: bumped
#: whenever the same seed and plants would give other pixels or labels, so cached
#: worlds and audited models are rebuilt (2: the glyph's blur scales with its size).
WORLD_VERSION = 2


@dataclass
class World:
    """A generated world.

    Attributes
    ----------
    root : Path or None
        Directory holding the manifest and images (``None`` if only in memory).
    frame : pandas.DataFrame
        The manifest, one row per example, columns :data:`MANIFEST_COLUMNS`
        plus ``planted_<name>``.
    plants : list of Plant
    seed : int
    sizes : dict
        Split -> number of examples.
    images : dict
        Split -> uint8 array (n, 32, 32, 3) in manifest order, filled lazily.
    """

    root: Path | None
    frame: pd.DataFrame
    plants: list[Plant]
    seed: int
    sizes: dict[str, int]
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def manifest_path(self) -> Path | None:
        """Path of ``manifest.parquet`` (``None`` if in memory only)."""
        return None if self.root is None else self.root / "manifest.parquet"

    @property
    def key(self) -> str:
        """Hash of what determines the world's content (seed, plants, sizes, generator version)."""
        return world_key(self.plants, seed=self.seed, sizes=self.sizes)

    def truth(self) -> list[dict[str, object]]:
        """The ``truth.json``-ready planted slices, with member counts per split."""
        entries = []
        for plant in self.plants:
            entry = plant.truth()
            col = self.frame[f"planted_{plant.name}"]
            entry["n_members"] = {s: int(col[self.frame["split"] == s].sum()) for s in SPLITS}
            entries.append(entry)
        return entries

    def split_images(self, split: str) -> np.ndarray:
        """uint8 images (n, 32, 32, 3) of ``split`` in manifest order (read from PNG if needed)."""
        if split not in self.images:
            if self.root is None:
                raise fail(f"world has no images for split {split!r}")
            from PIL import Image

            paths = self.frame.loc[self.frame["split"] == split, "path"]
            self.images[split] = np.stack(
                [np.asarray(Image.open(self.root / p).convert("RGB")) for p in paths]
            )
        return self.images[split]

    def split_frame(self, split: str) -> pd.DataFrame:
        """Manifest rows of ``split``."""
        return self.frame[self.frame["split"] == split].reset_index(drop=True)


def world_key(plants: Sequence[Plant], *, seed: int, sizes: dict[str, int]) -> str:
    """Stable 16-hex-digit hash of a world's defining parameters."""
    payload = json.dumps(
        {
            "format": FORMAT,
            "version": WORLD_VERSION,
            "seed": seed,
            "plants": [p.spec for p in plants],
            "sizes": {s: sizes[s] for s in SPLITS},
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_sizes(sizes: dict[str, int] | None) -> dict[str, int]:
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    if set(sizes) != set(SPLITS):
        raise fail(f"sizes has keys {sorted(sizes)}; expected exactly {list(SPLITS)}")
    return {s: check_int(sizes[s], name=f"sizes[{s!r}]", low=len(CLASS_NAMES)) for s in SPLITS}


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    k = len(CLASS_NAMES)
    labels = np.concatenate([np.repeat(np.arange(k), n // k), rng.permutation(k)[: n % k]])
    return rng.permutation(labels)


def _apply_attribute_plants(
    labels: np.ndarray,
    attrs: dict[str, np.ndarray],
    plants: Sequence[Plant],
    rng: np.random.Generator,
) -> None:
    """Skew train attributes in place for spurious and rare plants."""
    for plant in plants:
        if plant.kind not in ("spurious", "rare"):
            continue
        values = np.asarray(FAMILIES[plant.family], dtype=object)
        others = values[values != plant.value]
        column = attrs[plant.family]
        if plant.kind == "spurious":
            # In every other class, the value gets probability (1 - rate) / (k - 1).
            p_value = (1.0 - plant.rate) / (len(values) - 1)
            rows = np.flatnonzero(labels != plant.cls)
            draw = rng.random(len(rows)) < p_value
            fill = others[rng.integers(0, len(others), len(rows))]
            column[rows] = np.where(draw, plant.value, fill)
        rows = rng.permutation(np.flatnonzero(labels == plant.cls))
        n_value = round(plant.rate * len(rows))
        column[rows[:n_value]] = plant.value
        column[rows[n_value:]] = others[rng.integers(0, len(others), len(rows) - n_value)]


def _apply_label_noise(
    labels: np.ndarray,
    attrs: dict[str, np.ndarray],
    plants: Sequence[Plant],
    rng: np.random.Generator,
) -> np.ndarray:
    noisy = labels.copy()
    for plant in plants:
        if plant.kind != "noisy":
            continue
        members = rng.permutation(np.flatnonzero(plant_membership(plant, labels, attrs)))
        flipped = members[: round(plant.rate * len(members))]
        noisy[flipped] = plant.noisy_target
    return noisy


def generate_world(
    plants: str | Sequence[str | Plant] = (),
    *,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
) -> World:
    """Generate a world in memory (manifest rows and images; nothing written).

    Parameters
    ----------
    plants : str or sequence of (str or Plant), default ()
        Plant specs ``KIND:CLASS:FAMILY=VALUE:RATE``; see :mod:`failscope.world.plants`.
    seed : int, default 0
    sizes : dict, optional
        Split -> number of examples; default :data:`DEFAULT_SIZES`.

    Returns
    -------
    World
        With ``root=None``; ``path`` column holds ``images/{split}/{index:06d}.png``.
    """
    plant_list = parse_plants(list(plants) if not isinstance(plants, str) else plants)
    seed = check_int(seed, name="seed", low=0)
    sizes = _check_sizes(sizes)
    _, glyph_labels = load_glyphs()
    pools = glyph_pools()
    frames, images = [], {}
    for split_index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, split_index])
        n = sizes[split]
        labels = _balanced_labels(n, rng)
        glyph_ids = np.empty(n, dtype=np.int64)
        for cls in range(len(CLASS_NAMES)):
            rows = np.flatnonzero(labels == cls)
            pool = pools[split][glyph_labels[pools[split]] == cls]
            glyph_ids[rows] = rng.choice(pool, size=len(rows))
        attrs = {
            f: np.asarray(values, dtype=object)[rng.integers(0, len(values), size=n)]
            for f, values in FAMILIES.items()
        }
        noisy_labels = labels
        if split == "train":
            _apply_attribute_plants(labels, attrs, plant_list, rng)
            noisy_labels = _apply_label_noise(labels, attrs, plant_list, rng)
        images[split], boxes = render_scenes(glyph_ids, attrs, rng=rng, return_boxes=True)
        frame = pd.DataFrame(
            {
                "path": [f"images/{split}/{i:06d}.png" for i in range(n)],
                "label": noisy_labels.astype(np.int64),
                "split": split,
                **{f: attrs[f].astype(str) for f in FAMILIES},
                "glyph_id": glyph_ids,
                **{c: boxes[:, j] for j, c in enumerate(GLYPH_BOX_COLUMNS)},
                "true_label": labels.astype(np.int64),
            }
        )
        for plant in plant_list:
            frame[f"planted_{plant.name}"] = plant_membership(plant, labels, attrs)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    return World(root=None, frame=frame, plants=plant_list, seed=seed, sizes=sizes, images=images)


def _write_json(path: Path, payload: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def _write_pngs(root: Path, paths: Sequence[str], images: np.ndarray, workers: int = 4) -> None:
    from PIL import Image

    def save(i: int) -> None:
        Image.fromarray(images[i]).save(root / paths[i], compress_level=1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(save, range(len(paths))))


def make_world(
    plants: str | Sequence[str | Plant] = (),
    *,
    seed: int = 0,
    root: str | os.PathLike[str],
    sizes: dict[str, int] | None = None,
    overwrite: bool = False,
) -> World:
    """Generate a world and write it to ``root`` (or load it if already there).

    Parameters
    ----------
    plants : str or sequence of (str or Plant), default ()
        Plant specs; see :mod:`failscope.world.plants` and
        :data:`failscope.world.DEFAULT_PLANTS`.
    seed : int, default 0
    root : path
        Output directory; created if missing.
    sizes : dict, optional
        Split -> number of examples; default :data:`DEFAULT_SIZES`.
    overwrite : bool, default False
        Regenerate even if ``root`` already holds the same world (same key).

    Returns
    -------
    World
        With images for every split held in memory.
    """
    root = Path(root)
    plant_list = parse_plants(list(plants) if not isinstance(plants, str) else plants)
    sizes = _check_sizes(sizes)
    key = world_key(plant_list, seed=check_int(seed, name="seed", low=0), sizes=sizes)
    meta_path = root / "world.json"
    if not overwrite and meta_path.is_file() and (root / "manifest.parquet").is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key and _has_columns(root / "manifest.parquet", MANIFEST_COLUMNS):
            logger.info("world %s already at %s; loading", key, root)
            return load_world(root)
    t0 = time.perf_counter()
    world = generate_world(plant_list, seed=seed, sizes=sizes)
    t1 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = world.frame["split"] == split
        _write_pngs(root, list(world.frame.loc[rows, "path"]), world.images[split])
    tmp = root / "manifest.parquet.tmp"
    world.frame.to_parquet(tmp, index=False)
    os.replace(tmp, root / "manifest.parquet")
    world.root = root
    _write_json(root / "truth.json", {"format": FORMAT, "seed": seed, "plants": world.truth()})
    _write_json(
        meta_path,
        {
            "format": FORMAT,
            "version": WORLD_VERSION,
            "key": key,
            "seed": seed,
            "plants": [p.spec for p in plant_list],
            "sizes": sizes,
        },
    )
    logger.info(
        "world %s: generated in %.1fs, written in %.1fs to %s",
        key,
        t1 - t0,
        time.perf_counter() - t1,
        root,
    )
    return world


def _has_columns(path: Path, columns: Sequence[str]) -> bool:
    """Whether the Parquet file has every one of ``columns`` (a world written before the
    glyph boxes were recorded has the same key and pixels, but is rewritten)."""
    import pyarrow.parquet as pq

    return set(columns) <= set(pq.read_schema(path).names)


def load_world(root: str | os.PathLike[str]) -> World:
    """Load a world written by :func:`make_world` (images are read lazily)."""
    root = Path(root)
    meta_path = root / "world.json"
    if not meta_path.is_file():
        raise fail(f"{root} is not a world directory (no world.json); create one with make_world")
    meta = json.loads(meta_path.read_text())
    frame = pd.read_parquet(root / "manifest.parquet")
    return World(
        root=root,
        frame=frame,
        plants=parse_plants(meta["plants"]),
        seed=int(meta["seed"]),
        sizes={s: int(meta["sizes"][s]) for s in SPLITS},
    )
