"""The run directory: the contract between stages.

Every stage reads and writes one folder (``RUN/``). All writes are atomic:
the bytes go to a temporary file in the same folder, then ``os.replace``
moves them into place, so a killed run never leaves a half-written file.

Layout (``FORMAT_VERSION`` 1)::

    RUN/
      run.json            config, versions, seeds, timings, skipped inputs, embeddings
      examples.parquet    one row per scored example (see EXAMPLE_COLUMNS)
      slices.json         one entry per class slice (see SLICE_KEYS)
      directions.npy      (n_classes, d) float32, NaN rows for skipped classes
      error_directions.npz  the fitted ErrorDirections (no pickle)
      cache/              embeddings (memory-mapped .npy + key file), text embeddings
      truth.json          world runs only: the planted slices
      evaluation.json     ``failscope evaluate`` output
      report.html         self-contained report
      retrain/            metrics.json, predictions.parquet, checkpoints
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import numpy as np

from failscope._validation import fail

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

RUN_JSON = "run.json"
EXAMPLES = "examples.parquet"
SLICES_JSON = "slices.json"
DIRECTIONS = "directions.npy"
ESTIMATOR = "error_directions.npz"
TRUTH_JSON = "truth.json"
EVALUATION_JSON = "evaluation.json"
REPORT_HTML = "report.html"
RETRAIN_DIR = "retrain"
CACHE_DIR = "cache"

#: Columns every ``examples.parquet`` has, in this order; dataset metadata columns follow.
EXAMPLE_COLUMNS = (
    "id",  # int, row position in the dataset, stable across stages
    "path",  # str, image path as given by the dataset
    "split",  # str, e.g. train/val/test
    "label",  # int class index
    "pred",  # int predicted class index
    "correct",  # bool, pred == label
    "failure_score",  # float, w_label . z + b_label; NaN if the class was skipped
    "slice",  # bool, on the failure side of its class's hyperplane
)

#: Keys of each entry in ``slices.json["slices"]``.
SLICE_KEYS = (
    "id",  # str, e.g. "class-7"
    "class_index",  # int
    "class_name",  # str
    "status",  # "ok" or "skipped"
    "reason",  # why skipped, else null
    "n_fit",  # examples of this class in the fitting split
    "n_errors_fit",  # errors among them
    "error_rate",  # n_errors_fit / n_fit
    "cv_score",  # mean CV score at the best C (metric in cv_metric), null if skipped
    "cv_metric",  # "balanced_accuracy" or "roc_auc"
    "C",  # chosen inverse regularisation strength
    "threshold",  # {"mode": "zero"|"quantile"|"topk", "value": float, "cutoff": float}
    "size",  # slice members in the fitting split
    "error_rate_in",  # error rate inside the slice (fitting split)
    "error_rate_out",  # error rate outside it
    "captions",  # {"failure": [{"text", "score"}...], "success": [...]} once captioned
    "caption_checks",  # list of caption-check results once checked
)


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; move it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the file it wrote onto ``path``.

    For libraries that want a file name rather than a handle (pandas, numpy, matplotlib).
    The temporary name keeps ``path``'s suffix so that format sniffing works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write ``data`` as indented UTF-8 JSON (NaN/inf become null)."""
    text = json.dumps(_nan_to_none(data), indent=2, default=_json_default, allow_nan=False)
    with atomic_open(path, "w") as fh:
        fh.write(text + "\n")
    return Path(path)


def read_json(path: str | os.PathLike[str], *, what: str) -> Any:
    """Read a JSON file, raising a one-line error naming the file if it is missing or bad."""
    path = Path(path)
    if not path.is_file():
        raise fail(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(
            f"{what} {path} is not valid JSON ({exc}); re-run the stage that wrote it"
        ) from None


def write_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Atomically save ``array`` as ``.npy`` (no pickle)."""
    return atomic_write(path, lambda tmp: np.save(tmp, np.asarray(array), allow_pickle=False))


def write_parquet(path: str | os.PathLike[str], frame: Any) -> Path:
    """Atomically write a pandas DataFrame as Parquet."""
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


# --------------------------------------------------------------------------- reading a run


def _check_format(data: dict[str, Any], path: Path) -> None:
    fmt = data.get("format")
    if fmt != FORMAT_VERSION:
        raise fail(
            f"{path} has format {fmt!r}, this failscope reads format {FORMAT_VERSION}; "
            "re-run `failscope discover` with this version"
        )


@dataclass
class Run:
    """Typed access to a run directory; parts are read lazily.

    Parameters
    ----------
    path : Path
        The run directory.
    """

    path: Path
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- core parts written by discover
    @cached_property
    def info(self) -> dict[str, Any]:
        """``run.json``: config, versions, timings, classes, skipped inputs."""
        data = read_json(self.path / RUN_JSON, what="run.json")
        _check_format(data, self.path / RUN_JSON)
        return data

    @property
    def class_names(self) -> list[str]:
        """Class names in class-index order."""
        return list(self.info["classes"])

    @property
    def skipped(self) -> list[dict[str, str]]:
        """Inputs skipped as missing or corrupt: ``[{"path", "reason"}, ...]``."""
        return list(self.info.get("skipped", []))

    @cached_property
    def slices(self) -> list[dict[str, Any]]:
        """``slices.json`` entries, one per class, in class-index order."""
        data = read_json(self.path / SLICES_JSON, what="slices.json")
        _check_format(data, self.path / SLICES_JSON)
        return list(data["slices"])

    @cached_property
    def directions(self) -> np.ndarray:
        """Failure directions, shape (n_classes, d), float32; NaN rows for skipped classes."""
        return np.load(self.path / DIRECTIONS, allow_pickle=False)

    @cached_property
    def examples(self) -> Any:
        """``examples.parquet`` as a pandas DataFrame."""
        import pandas as pd

        p = self.path / EXAMPLES
        if not p.is_file():
            raise fail(f"examples.parquet not found in {self.path}; is this a failscope run?")
        return pd.read_parquet(p)

    def error_directions(self) -> Any:
        """The fitted :class:`~failscope.directions.ErrorDirections`."""
        from failscope.directions import ErrorDirections

        return ErrorDirections.load(self.path / ESTIMATOR)

    def embeddings(self, *, mmap: bool = True) -> np.ndarray:
        """Image embeddings aligned with ``examples`` rows, shape (n_examples, d).

        Memory-mapped by default, so a million rows never sit in RAM at once.
        """
        meta = self.info.get("embeddings") or {}
        if "path" not in meta:
            raise fail(f"{self.path / RUN_JSON} records no embeddings file")
        p = Path(meta["path"])
        p = p if p.is_absolute() else self.path / p
        if not p.is_file():
            raise fail(f"embeddings file {p} is missing; re-run `failscope discover`")
        if meta.get("keys_sha256"):  # read in place from a shared cache: still this run's rows?
            from failscope.embed import file_sha256

            keys = Path(meta["keys_path"])
            if not keys.is_file() or file_sha256(keys) != meta["keys_sha256"]:
                raise fail(
                    f"the shared embedding cache {p.parent} has changed since this run was "
                    "written (another run re-used it); re-run `failscope discover`"
                )
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)

    # -- optional parts written by later stages
    def _optional_json(self, name: str) -> Any | None:
        p = self.path / name
        return read_json(p, what=name) if p.is_file() else None

    @property
    def truth(self) -> list[dict[str, Any]] | None:
        """Planted slices (world runs only), else None."""
        data = self._optional_json(TRUTH_JSON)
        return None if data is None else list(data["plants"])

    @property
    def evaluation(self) -> dict[str, Any] | None:
        """``evaluation.json`` if ``failscope evaluate`` has run, else None."""
        return self._optional_json(EVALUATION_JSON)

    @property
    def retrain_metrics(self) -> dict[str, Any] | None:
        """``retrain/metrics.json`` if ``failscope retrain`` has run, else None."""
        return self._optional_json(f"{RETRAIN_DIR}/metrics.json")

    # -- writing back
    def save_slices(self, slices: list[dict[str, Any]]) -> None:
        """Atomically rewrite ``slices.json`` (e.g. after adding captions)."""
        write_json(self.path / SLICES_JSON, {"format": FORMAT_VERSION, "slices": slices})
        self.__dict__["slices"] = list(slices)

    def update_info(self, **entries: Any) -> None:
        """Merge top-level ``entries`` into ``run.json`` and rewrite it atomically."""
        info = dict(self.info)
        info.update(entries)
        write_json(self.path / RUN_JSON, info)
        self.__dict__["info"] = info


def load_run(path: str | os.PathLike[str]) -> Run:
    """Open the run directory at ``path``.

    Raises
    ------
    InputError
        If ``path`` is not a run directory of a format this version reads.
    """
    path = Path(path)
    if not path.is_dir():
        raise fail(f"run directory not found: {path}")
    if not (path / RUN_JSON).is_file():
        raise fail(f"{path} has no run.json; is it a run written by `failscope discover`?")
    run = Run(path)
    _ = run.info  # validate the format at the door
    return run
