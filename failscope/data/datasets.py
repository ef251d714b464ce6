"""Datasets: an ImageFolder tree or a CSV/Parquet manifest, read lazily.

Two layouts are understood (:func:`load_dataset`):

* **ImageFolder** (a directory). Either ``ROOT/<class>/**/<image>`` (one split) or
  ``ROOT/<split>/<class>/**/<image>`` when *every* top-level folder is a split name
  (``train``, ``val``, ``valid``, ``validation``, ``test``). Classes are the sorted
  union of the class folder names, as in ``torchvision.datasets.ImageFolder``.
  Files with other extensions than :data:`IMG_EXTENSIONS` and hidden entries are
  ignored. Rows are ordered by split folder, class, then path. Symbolic links are
  followed, but never back into a folder already on the way (a link loop, or a
  link to the root, a split or a class folder): each file is counted once, and a
  file reached under two classes or splits is refused.
* **Manifest** (``.csv``, ``.parquet`` or ``.pq``) with columns ``path`` (relative to
  the manifest's folder, or absolute), ``label`` (class name, or an integer class
  index), an optional ``split``, and any other columns, which are kept as metadata
  and copied to ``examples.parquet`` untouched. Rows keep the manifest's order.
  Each image may appear once: a path listed twice (after resolving ``.`` and
  ``..``) is refused, since a copy would be scored twice and leak across CV folds.

Class order: a ``classes`` file (one name per line, or a JSON list) if given; else
the sorted unique string labels; for integer labels, ``"0" .. str(max)``.

Splits: the split folder or ``split`` column if there is one. Otherwise
``split_by`` decides: ``None`` puts every example in one fitting split named
``val``; ``"random:F"`` sends a seeded, per-class fraction ``F`` of each class to
``val`` and the rest to ``train``; ``"column:NAME"`` uses the manifest column NAME.

Images are never loaded here; :func:`iter_image_batches` streams them in batches
through a torch ``DataLoader``. A missing or unreadable file does not raise: it is
returned as skipped (path and reason) and the batch goes on without it. So is an
image above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).

Pixels (:func:`to_rgb`): every image becomes 8-bit RGB. 16- and 32-bit integer
greyscale (modes ``I;16``, ``I``) is scaled from 0..65535 to 0..255; floating-point
images (mode ``F``) have no known range and are skipped; transparent pixels
(RGBA, LA, palette or greyscale with a transparent colour) are composited onto
:data:`ALPHA_BACKGROUND` (white), so a hidden colour under alpha 0 never leaks in;
greyscale, CMYK and the other modes go through Pillow's ``convert("RGB")``.

Cache keys (:meth:`ImageDataset.file_keys`): ``"stat"`` (default) trusts a file's
(path, size, modification time); ``"content"`` hashes its bytes, which also sees an
edit that keeps the size and the mtime, at the cost of reading every file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import InputError, check_choice, check_file, fail

logger = logging.getLogger(__name__)

__all__ = [
    "ALPHA_BACKGROUND",
    "CACHE_KEYS",
    "IMG_EXTENSIONS",
    "SPLIT_DIRS",
    "ImageBatch",
    "ImageDataset",
    "iter_image_batches",
    "load_dataset",
    "load_dataset_from_spec",
    "read_classes_file",
    "to_rgb",
]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: Top-level folder names that mark an ImageFolder tree as ``ROOT/<split>/<class>/``.
SPLIT_DIRS = ("train", "val", "valid", "validation", "test")
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
#: Metadata columns may not use these names (they are written by failscope).
RESERVED_COLUMNS = (
    "id", "path", "split", "label", "pred", "correct", "failure_score", "slice", "confidence",
)  # fmt: skip
DEFAULT_SPLIT = "val"
#: RGB that transparent pixels are composited onto (see the module docstring).
ALPHA_BACKGROUND = (255, 255, 255)
#: How :meth:`ImageDataset.file_keys` identifies a file version.
CACHE_KEYS = ("stat", "content")


# --------------------------------------------------------------------------- paths


class _PathTable:
    """Absolute paths packed into one UTF-8 buffer plus offsets.

    A list of a million Python strings is copied page by page into every
    DataLoader worker (reference counts touch every object); two numpy arrays are not.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [p.encode("utf-8") for p in paths]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.buffer[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")


def _resolve(root: Path, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else root / p)


# --------------------------------------------------------------------------- the dataset


@dataclass
class ImageDataset:
    """Examples of an image classification dataset (images are read only when iterated).

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per example, index ``0..n-1`` (the example ``id``), with columns
        ``path`` (str, as given), ``split`` (str), ``label`` (int64 class index) and
        the metadata columns.
    classes : list of str
        Class names in class-index order.
    root : Path
        Folder that relative paths are resolved against.
    source : dict
        How to re-open the dataset (see :meth:`spec`).
    labels_are_indices : bool, default=False
        True when class names were made up from integer labels (``"0".."k"``), so
        the class list may be extended to the audited model's number of outputs.
    """

    frame: Any
    classes: list[str]
    root: Path
    source: dict[str, Any]
    labels_are_indices: bool = False
    _paths: _PathTable | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        """Class indices, int64 (n,)."""
        return self.frame["label"].to_numpy(dtype=np.int64)

    @property
    def splits(self) -> np.ndarray:
        """Split name of every example, object (n,)."""
        return self.frame["split"].to_numpy(dtype=object)

    @property
    def split_names(self) -> list[str]:
        """The splits present, in order of first appearance."""
        return list(dict.fromkeys(self.frame["split"].tolist()))

    @property
    def metadata_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in ("path", "split", "label")]

    @property
    def abspaths(self) -> _PathTable:
        """Absolute image paths, indexable by example id."""
        if self._paths is None:
            self._paths = _PathTable([_resolve(self.root, p) for p in self.frame["path"].tolist()])
        return self._paths

    @property
    def image_root(self) -> Path | None:
        """The ImageFolder tree every image is found under, or None for a manifest."""
        return self.root if self.source.get("kind") == "imagefolder" else None

    def extend_classes(self, n_outputs: int) -> None:
        """Grow made-up integer class names to ``n_outputs`` (model has more outputs)."""
        if self.labels_are_indices and n_outputs > len(self.classes):
            self.classes = [str(i) for i in range(n_outputs)]
            self.source["n_classes"] = n_outputs

    def spec(self) -> dict[str, Any]:
        """JSON-able description that :func:`load_dataset_from_spec` re-opens.

        Keys: ``kind`` ("imagefolder" or "manifest"), ``root``, ``manifest``,
        ``classes_file``, ``split_by``, ``seed``, ``n_examples``, ``n_classes``.
        """
        return dict(self.source, n_examples=len(self), n_classes=len(self.classes))

    def file_keys(self, mode: str = "stat") -> np.ndarray:
        """One uint64 per example identifying the file's version; 0 if it cannot be read.

        Used as the embedding cache key: a changed file gets a new key.

        Parameters
        ----------
        mode : {"stat", "content"}, default="stat"
            ``"stat"`` hashes (path, size, mtime): an edit that keeps the size and the
            mtime goes unseen. ``"content"`` hashes the file's bytes (every file is read).
        """
        check_choice(mode, CACHE_KEYS, name="cache_key")
        paths = self.abspaths
        keys = np.zeros(len(paths), dtype=np.uint64)
        for i in range(len(paths)):
            p = paths[i]
            try:
                if mode == "content":
                    with open(p, "rb") as fh:
                        digest = hashlib.file_digest(
                            fh, lambda: hashlib.blake2b(digest_size=8)
                        ).digest()
                else:
                    st = os.stat(p)
                    text = f"{p}\0{st.st_size}\0{st.st_mtime_ns}"
                    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            except OSError:
                continue
            keys[i] = np.uint64(int.from_bytes(digest, "little") | 1)  # never 0
        return keys


# --------------------------------------------------------------------------- loading


def read_classes_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file (one per line, blanks ignored) or a JSON list."""
    p = check_file(path, what="classes file")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise fail(f"classes file {p} is not valid JSON ({exc})") from None
        if not isinstance(names, list):
            raise fail(f"classes file {p} must hold a JSON list of class names")
        names = [str(n) for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise fail(f"classes file {p} lists no classes")
    dup = _first_duplicate(names)
    if dup is not None:
        raise fail(f"classes file {p} lists class {dup!r} twice")
    return names


def _first_duplicate(items: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for x in items:
        if x in seen:
            return x
        seen.add(x)
    return None


def _first_files(dataset: ImageDataset, ids: np.ndarray) -> str:
    """``"a.png, b.png, c.png, ..."``: the paths of the first three of ``ids``."""
    paths = dataset.frame["path"]
    first = ", ".join(str(paths.iat[int(i)]) for i in ids[:3])
    return first + (", ..." if len(ids) > 3 else "")


def _show(names: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in names[:limit])
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return f"[{shown}{more}]"


def load_dataset(
    data: str | os.PathLike[str],
    *,
    classes: str | os.PathLike[str] | Sequence[str] | None = None,
    split_by: str | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Open an ImageFolder tree or a CSV/Parquet manifest.

    Parameters
    ----------
    data : path
        A directory (ImageFolder) or a ``.csv``/``.parquet``/``.pq`` manifest.
    classes : path or list of str, optional
        Class names in class-index order (a file: one per line, or a JSON list).
    split_by : {None, "random:F", "column:NAME"}, optional
        How to split data that has no split folder or ``split`` column (see the
        module docstring). None puts everything in the fitting split ``val``.
    seed : int, default=0
        Seed of ``"random:F"``.

    Returns
    -------
    ImageDataset

    Raises
    ------
    InputError
        One line naming the file, column, row and value at fault.
    """
    p = Path(data)
    if not p.exists():
        raise fail(f"data not found: {p}")
    class_list = read_classes_file(classes) if isinstance(classes, (str, os.PathLike)) else None
    if classes is not None and class_list is None:
        class_list = [str(c) for c in classes]
    classes_file = str(Path(classes).resolve()) if isinstance(classes, (str, os.PathLike)) else None
    if p.is_dir():
        ds = _load_image_folder(p.resolve(), class_list)
    elif p.name.lower().endswith(MANIFEST_SUFFIXES):
        ds = _load_manifest(p.resolve(), class_list)
    else:
        raise fail(
            f"data {p} is neither a folder (ImageFolder) nor a manifest "
            f"({', '.join(MANIFEST_SUFFIXES)})"
        )
    ds.source.update(
        classes_file=classes_file, classes=class_list if classes_file is None else None
    )
    _apply_split_by(ds, split_by, seed)
    logger.info(
        "dataset: %d examples, %d classes, splits %s",
        len(ds),
        ds.n_classes,
        {s: int(n) for s, n in ds.frame["split"].value_counts(sort=False).items()},
    )
    return ds


def load_dataset_from_spec(spec: dict[str, Any]) -> ImageDataset:
    """Re-open a dataset from :meth:`ImageDataset.spec` (as stored in ``run.json``)."""
    data = spec["manifest"] if spec["kind"] == "manifest" else spec["root"]
    classes = spec.get("classes_file") or spec.get("classes")
    ds = load_dataset(
        data, classes=classes, split_by=spec.get("split_by"), seed=spec.get("seed", 0)
    )
    if spec.get("n_classes"):
        ds.extend_classes(int(spec["n_classes"]))
    return ds


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def _dir_key(path: str | os.PathLike[str]) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _walk_images(folder: Path, visited: set[tuple[int, int]]) -> tuple[list[str], bool]:
    """Image files under ``folder``, each folder's files before its sub-folders (sorted).

    Links to folders are followed unless the folder (``(st_dev, st_ino)``) is in
    ``visited``, which grows as folders are entered: a link loop, or two links to
    one folder, is walked once. Returns the paths and whether any link was seen.
    """
    out: list[str] = []
    saw_link = False
    stack = [str(folder)]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            logger.warning("cannot list folder %s (%s); its images are left out", here, exc)
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            saw_link = saw_link or e.is_symlink()
            if not e.is_dir():
                if _is_image(e.name):
                    out.append(e.path)
                continue
            try:
                key = _dir_key(e.path)
            except OSError:
                continue
            if key in visited:
                logger.warning(
                    "not following %s: it leads back to %s, a folder already in the scan",
                    e.path, os.path.realpath(e.path),
                )  # fmt: skip
                continue
            visited.add(key)
            subdirs.append(e.path)
        stack.extend(reversed(subdirs))
    return out, saw_link


def _drop_linked_copies(
    root: Path, paths: list[str], splits: list[str], labels: list[int], classes: Sequence[str]
) -> list[int]:
    """Row indices to keep so that each file (by ``(st_dev, st_ino)``) appears once.

    A second path to a file (through a symbolic link) under the same split and class
    is dropped with a warning; under another split or class it is refused.
    """
    first: dict[tuple[int, int], int] = {}
    keep = []
    for i, p in enumerate(paths):
        try:
            key = _dir_key(root / p)
        except OSError:
            keep.append(i)  # a broken link: skipped later as a missing file
            continue
        j = first.setdefault(key, i)
        if j == i:
            keep.append(i)
        elif (splits[j], labels[j]) != (splits[i], labels[i]):
            raise fail(
                f"data folder {root}: {p} and {paths[j]} are the same file (a symbolic "
                f"link) under class {classes[labels[i]]!r} of split {splits[i]!r} and "
                f"class {classes[labels[j]]!r} of split {splits[j]!r}; keep one of them"
            )
    if len(keep) < len(paths):
        logger.warning(
            "data folder %s: %d paths reach files already listed (symbolic links); each "
            "file is counted once", root, len(paths) - len(keep),
        )  # fmt: skip
    return keep


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _load_image_folder(root: Path, class_list: list[str] | None) -> ImageDataset:
    import pandas as pd

    top = _subdirs(root)
    if not top:
        raise fail(f"data folder {root} has no sub-folders; expected ROOT/<class>/<image>")
    is_split = [d.lower() in SPLIT_DIRS for d in top]
    if all(is_split):
        groups = [(d, root / d) for d in top]
        order = {s: i for i, s in enumerate(SPLIT_DIRS)}
        groups.sort(key=lambda g: order[g[0].lower()])
    elif any(is_split):
        splits = [d for d, s in zip(top, is_split, strict=True) if s]
        others = [d for d, s in zip(top, is_split, strict=True) if not s]
        raise fail(
            f"data folder {root} mixes split folders {_show(splits)} and class folders "
            f"{_show(others)}; use ROOT/<class>/<image> or ROOT/<split>/<class>/<image>"
        )
    else:
        groups = [(None, root)]
    found: dict[str, None] = {}
    for _, folder in groups:
        found.update(dict.fromkeys(_subdirs(folder)))
    names = sorted(found) if class_list is None else class_list
    index = {c: i for i, c in enumerate(names)}
    # the root, split and class folders: a link back to any of them is not followed
    fixed = {_dir_key(root)} | {_dir_key(f) for _, f in groups}
    fixed |= {_dir_key(f / c) for _, f in groups for c in _subdirs(f)}
    rows_path: list[str] = []
    rows_split: list[str] = []
    rows_label: list[int] = []
    any_link = any(f.is_symlink() for _, f in groups)
    for split, folder in groups:
        for cls in _subdirs(folder):
            if cls not in index:
                raise fail(
                    f"class folder {folder / cls} is not in the classes {_show(names)}; "
                    "add it to the classes file or remove the folder"
                )
            files, saw_link = _walk_images(folder / cls, set(fixed))
            any_link = any_link or saw_link or (folder / cls).is_symlink()
            rows_path.extend(os.path.relpath(f, root).replace(os.sep, "/") for f in files)
            rows_split.extend([split or DEFAULT_SPLIT] * len(files))
            rows_label.extend([index[cls]] * len(files))
    if any_link:
        keep = _drop_linked_copies(root, rows_path, rows_split, rows_label, names)
        rows_path = [rows_path[i] for i in keep]
        rows_split = [rows_split[i] for i in keep]
        rows_label = [rows_label[i] for i in keep]
    if not rows_path:
        raise fail(f"no images found under {root} (extensions: {', '.join(IMG_EXTENSIONS)})")
    frame = pd.DataFrame(
        {
            "path": rows_path,
            "split": rows_split,
            "label": np.asarray(rows_label, dtype=np.int64),
        }
    )
    source = {
        "kind": "imagefolder",
        "root": str(root),
        "manifest": None,
        "has_split": groups[0][0] is not None,
    }
    return ImageDataset(frame=frame, classes=list(names), root=root, source=source)


def _read_table(path: Path) -> Any:
    import pandas as pd

    try:
        if path.name.lower().endswith(".csv"):
            # labels as text: "007" stays a class name; canonical integers become indices
            return pd.read_csv(path, dtype={"path": str, "split": str, "label": str})
        return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        msg = " ".join(str(exc).split())
        raise fail(f"cannot read manifest {path}: {msg}") from None


def _load_manifest(path: Path, class_list: list[str] | None) -> ImageDataset:
    import pandas as pd

    table = _read_table(path)
    for col in ("path", "label"):
        if col not in table.columns:
            raise fail(
                f"manifest {path} has no {col!r} column (columns: {_show(list(table.columns))})"
            )
    table = table.reset_index(drop=True)
    if not len(table):
        raise fail(f"manifest {path} has a header but no rows; list one image per row")
    paths = table["path"]
    bad = paths.isna() | (paths.astype(str).str.strip() == "")
    if bad.any():
        raise fail(f"manifest {path}: empty 'path' at row {int(np.flatnonzero(bad)[0])}")
    nul = paths.astype(str).str.contains("\x00", regex=False)
    if nul.any():
        row = int(np.flatnonzero(nul)[0])
        raise fail(
            f"manifest {path}: 'path' at row {row} holds a NUL byte "
            f"({paths.iat[row]!r}); no file name can contain one"
        )
    _refuse_duplicate_paths(paths.astype(str).tolist(), path)
    labels, names, are_indices = _encode_labels(table["label"], class_list, where=str(path))
    frame = pd.DataFrame({"path": paths.astype(str), "label": labels})
    has_split = "split" in table.columns
    if has_split:
        split = table["split"]
        bad = split.isna() | (split.astype(str).str.strip() == "")
        if bad.any():
            raise fail(f"manifest {path}: empty 'split' at row {int(np.flatnonzero(bad)[0])}")
        frame["split"] = split.astype(str).str.strip()
    else:
        frame["split"] = DEFAULT_SPLIT
    frame = frame[["path", "split", "label"]]
    for col in table.columns:
        if col in ("path", "label", "split"):
            continue
        name = str(col)
        if name in RESERVED_COLUMNS:
            new = f"meta_{name}"
            logger.warning(
                "manifest column %r renamed to %r (failscope writes %r)", name, new, name
            )
            name = new
        frame[name] = table[col].to_numpy()
    source = {
        "kind": "manifest",
        "root": str(path.parent),
        "manifest": str(path),
        "has_split": has_split,
    }
    return ImageDataset(
        frame=frame, classes=names, root=path.parent, source=source, labels_are_indices=are_indices
    )


def _refuse_duplicate_paths(paths: list[str], manifest: Path) -> None:
    """Raise naming the first path a manifest lists twice (``.``/``..`` resolved)."""
    import pandas as pd

    given = pd.Series(paths, dtype=object)
    base = str(manifest.parent)
    norm = base + "/" + given  # vectorised; only odd paths are normalised one by one
    odd = (  # absolute, or may hold "." / ".." / "//" segments
        given.str.startswith(("/", "."))
        | given.str.contains("/.", regex=False)
        | given.str.contains("//", regex=False)
    ).to_numpy()
    if odd.any():
        norm[odd] = [os.path.normpath(os.path.join(base, p)) for p in given[odd]]
    dup = norm.duplicated(keep=False)
    if not dup.any():
        return
    first = int(np.flatnonzero(dup)[0])
    rows = np.flatnonzero(norm == norm.iat[first])
    n_extra = int(norm.duplicated().sum())
    raise fail(
        f"manifest {manifest} lists {paths[first]!r} {len(rows)} times (rows "
        f"{', '.join(map(str, rows[:3]))}{', ...' if len(rows) > 3 else ''}; {n_extra} "
        "duplicate rows in all): a copy is scored twice and leaks across CV folds; "
        "keep one row per image"
    )


def _encode_labels(
    values: Any, class_list: list[str] | None, *, where: str
) -> tuple[np.ndarray, list[str], bool]:
    """Class indices (int64) and class names for a manifest's ``label`` column.

    Integer labels (an integer column, or text that is all canonical integers such as
    ``"0"``, ``"12"`` but not ``"007"``, and not class names from ``class_list``)
    are class indices; any other text is a class name.
    """
    import pandas as pd

    missing = values.isna()
    if missing.any():
        raise fail(f"manifest {where}: empty 'label' at row {int(np.flatnonzero(missing)[0])}")
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
        return _index_labels(values.to_numpy(dtype=np.int64), class_list, where=where)
    if pd.api.types.is_float_dtype(values):
        raise fail(
            f"manifest {where}: 'label' holds floats (e.g. {values.iloc[0]!r}); "
            "use class names or integer class indices"
        )
    strings = values.astype(str).str.strip()
    named = class_list is not None and strings.isin(class_list).any()
    if not named and strings.str.fullmatch(r"0|[1-9][0-9]*").all():
        return _index_labels(strings.astype(np.int64).to_numpy(), class_list, where=where)
    numbers = pd.to_numeric(strings, errors="coerce")
    if class_list is None and numbers.notna().all() and (numbers != numbers.round()).any():
        raise fail(
            f"manifest {where}: 'label' holds non-integer numbers (e.g. {strings.iloc[0]!r}); "
            "use class names or integer class indices"
        )
    names = sorted(strings.unique().tolist()) if class_list is None else list(class_list)
    lookup = {c: i for i, c in enumerate(names)}
    codes = strings.map(lookup)
    unknown = codes.isna()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise fail(
            f"manifest {where}: label {strings.iloc[row]!r} at row {row} is not in the "
            f"classes {_show(names)}"
        )
    return codes.to_numpy(dtype=np.int64), names, False


def _index_labels(
    codes: np.ndarray, class_list: list[str] | None, *, where: str
) -> tuple[np.ndarray, list[str], bool]:
    neg = codes < 0
    if neg.any():
        row = int(np.flatnonzero(neg)[0])
        raise fail(f"manifest {where}: label {codes[row]} at row {row} is negative")
    if class_list is None:
        return codes, [str(i) for i in range(int(codes.max()) + 1)], True
    over = codes >= len(class_list)
    if over.any():
        row = int(np.flatnonzero(over)[0])
        raise fail(
            f"manifest {where}: label index {codes[row]} at row {row} is out of range for "
            f"{len(class_list)} classes {_show(class_list)}"
        )
    return codes, list(class_list), False


_SPLIT_BY = re.compile(r"^(none|random:(.+)|column:(.+))$")


def _apply_split_by(ds: ImageDataset, split_by: str | None, seed: int) -> None:
    ds.source.update(split_by=split_by, seed=seed)
    if split_by is None or str(split_by).strip().lower() == "none":
        return
    m = _SPLIT_BY.match(str(split_by).strip())
    if not m:
        raise fail(
            f"split_by={split_by!r} is not understood; use 'none', 'random:F' or 'column:NAME'"
        )
    if ds.source.get("has_split"):
        where = "split folders" if ds.source["kind"] == "imagefolder" else "a 'split' column"
        raise fail(f"split_by={split_by!r} given but the data already has {where}")
    if m.group(2) is not None:
        from failscope._validation import check_fraction

        frac = check_fraction(m.group(2), name="split_by random fraction")
        rng = np.random.default_rng(seed)
        labels = ds.labels
        split = np.full(len(ds), "train", dtype=object)
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            n_val = round(frac * len(idx))
            split[rng.permutation(idx)[:n_val]] = DEFAULT_SPLIT
        ds.frame["split"] = split
        return
    col = m.group(3)
    if col not in ds.frame.columns:
        raise fail(
            f"split_by column {col!r} is not in the manifest "
            f"(columns: {_show(list(ds.frame.columns))})"
        )
    values = ds.frame[col]
    if values.isna().any():
        raise fail(
            f"split_by column {col!r} is empty at row {int(np.flatnonzero(values.isna())[0])}"
        )
    ds.frame["split"] = values.astype(str).str.strip()


# --------------------------------------------------------------------------- image batches


@dataclass
class ImageBatch:
    """One batch of decoded images.

    Attributes
    ----------
    ids : ndarray of int64, shape (b,)
        Example ids of the images in ``pixels`` (skipped ones are not included).
    pixels : torch.Tensor of shape (b, C, H, W), or None if every image failed
    skipped : list of (int, str)
        ``(id, reason)`` for each image of the batch that could not be read.
    """

    ids: np.ndarray
    pixels: Any
    skipped: list[tuple[int, str]]


class _ImageLoader:
    """Map-style dataset: ``loader[k]`` reads image ``ids[k]``; never raises on bad files."""

    def __init__(self, paths: _PathTable, ids: np.ndarray, transform: Callable[[Any], Any]):
        self.paths = paths
        self.ids = ids
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> tuple[int, Any, str | None]:
        from PIL import Image

        i = int(self.ids[k])
        path = self.paths[i]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    rgb = to_rgb(im)  # decodes fully: truncated files fail here
            return i, self.transform(rgb), None
        except FileNotFoundError:
            return i, None, "missing file"
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            return i, None, f"image too large: {_one_line(exc)}"
        except Exception as exc:
            return i, None, f"unreadable image ({type(exc).__name__}: {_one_line(exc)})"


def to_rgb(im: Any) -> Any:
    """A Pillow image as 8-bit RGB (the rules are in the module docstring).

    Raises
    ------
    ValueError
        For floating-point images (mode ``F``), whose value range is unknown.
    """
    from PIL import Image

    mode = im.mode
    if mode == "F":
        raise ValueError("floating-point image (mode F) has no known value range")
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(im).astype(np.float32)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
        return Image.fromarray(grey).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        background = Image.new("RGBA", im.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


_Sized = tuple[int, tuple[int, ...]]  # (example id, tensor shape)


def _collate(
    items: list[tuple[int, Any, str | None]],
) -> tuple[np.ndarray, Any, list, tuple[_Sized, _Sized] | None]:
    """Stack a batch; on images of different sizes, the first and the first odd one."""
    import torch

    ok = [(i, x) for i, x, _ in items if x is not None]
    ids = np.asarray([i for i, _ in ok], dtype=np.int64)
    bad = [(i, r) for i, x, r in items if x is None]
    if not ok:
        return ids, None, bad, None
    first = (ok[0][0], tuple(ok[0][1].shape))
    for i, x in ok[1:]:
        if tuple(x.shape) != first[1]:
            return ids, None, bad, (first, (i, tuple(x.shape)))
    return ids, torch.stack([x for _, x in ok]), bad, None


def _size_error(dataset: ImageDataset, a: _Sized, b: _Sized) -> InputError:
    paths = dataset.frame["path"]

    def shown(s: _Sized) -> str:
        return f"{paths.iat[s[0]]} ({'x'.join(map(str, s[1]))})"

    return fail(
        f"image {shown(b)} differs in size from {shown(a)}, and the model's input has no "
        "resize; pass an image size (e.g. --image-size 224) so images are resized"
    )


def iter_image_batches(
    dataset: ImageDataset,
    transform: Callable[[Any], Any],
    *,
    ids: np.ndarray | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
) -> Iterator[ImageBatch]:
    """Stream ``transform``-ed images of ``ids`` (default: all) in dataset order.

    Parameters
    ----------
    dataset : ImageDataset
    transform : callable
        PIL RGB image -> tensor of shape (C, H, W).
    ids : ndarray of int, optional
        Example ids to read, in the order given.
    batch_size : int, default=64
    num_workers : int, default=0
        DataLoader worker processes; order stays deterministic.

    Yields
    ------
    ImageBatch

    Raises
    ------
    InputError
        When transformed images differ in size (a transform without resize), naming
        two files of different sizes.
    """
    import torch

    ids = np.arange(len(dataset), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    loader = torch.utils.data.DataLoader(
        _ImageLoader(dataset.abspaths, ids, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    first: _Sized | None = None  # every batch must match the first image's size
    for batch_ids, pixels, bad, odd in loader:
        if odd is not None:
            raise _size_error(dataset, *odd)
        if pixels is not None:
            here = (int(batch_ids[0]), tuple(pixels.shape[1:]))
            first = first or here
            if here[1] != first[1]:
                raise _size_error(dataset, first, here)
        yield ImageBatch(ids=batch_ids, pixels=pixels, skipped=bad)
