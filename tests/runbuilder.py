"""The one way tests build run directories: through ``failscope.discover`` itself.

:func:`build_run` writes a manifest (and, optionally, tiny PNGs) for given
embeddings, labels and predictions, then runs the real ``discover`` with the
embeddings and predictions passed in, so every file of the run comes from the real
writers. Captions, evaluations and retrain results are added by calling the real
stages on the returned run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_RGB = [(220, 40, 40), (40, 170, 60), (40, 70, 220), (20, 20, 20)]


def write_pngs(
    folder: Path, n: int, *, distinct: int | None = None, size: int = 16, seed: int = 0
) -> list[str]:
    """Write ``n`` tiny RGB PNGs (a coloured block on white, ``distinct`` different ones
    repeated); return their file names."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pictures = []
    for i in range(distinct or n):
        arr = np.full((size, size, 3), 255, np.uint8)
        x0, y0 = rng.integers(0, size // 2, 2)
        arr[y0 : y0 + size // 2, x0 : x0 + size // 2] = _RGB[i % len(_RGB)]
        pictures.append(Image.fromarray(arr))
    names = []
    for i in range(n):
        name = f"img_{i:05d}.png"
        pictures[i % len(pictures)].save(folder / name)
        names.append(name)
    return names


def build_run(
    path: Path,
    *,
    embeddings: np.ndarray,
    labels: Sequence[int],
    predictions: Sequence[int] | np.ndarray,
    splits: Sequence[str],
    class_names: Sequence[str],
    metadata: Mapping[str, Sequence[Any]] | None = None,
    images: int = 0,
    paths: Sequence[str] | None = None,
    **settings: Any,
) -> Any:
    """Run ``failscope.discover`` on the given data and return the run.

    Parameters
    ----------
    path : Path
        The run directory; the manifest and images go to ``<path>-data/``.
    embeddings : ndarray of shape (n, d)
    labels, predictions : sequences of int, shape (n,)
        True classes and the audited model's predictions (or (n, k) probabilities).
    splits : sequence of str, shape (n,)
    class_names : sequence of str
    metadata : mapping of column -> values, optional
        Extra manifest columns (they pass through to ``examples.parquet``).
    images : int, default=0
        Write one tiny PNG per example, ``images`` different pictures in turn (for the
        report's thumbnails); 0 leaves the paths pointing at nothing.
    paths : sequence of str, optional
        Image paths to use instead (relative to the data folder).
    **settings
        Passed to ``failscope.discover`` (``slicer=``, ``seed=``, ``captions=``...);
        captions and the report are off unless asked for.
    """
    import pandas as pd

    from failscope import discover
    from failscope.data.models import Predictions

    path = Path(path)
    data = path.parent / f"{path.name}-data"
    data.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    if paths is None:
        paths = (
            write_pngs(data, n, distinct=images) if images else [f"none_{i}.png" for i in range(n)]
        )
    frame = pd.DataFrame(
        {
            "path": list(paths),
            "label": [class_names[int(c)] for c in labels],
            "split": list(splits),
            **{k: list(v) for k, v in (metadata or {}).items()},
        }
    )
    manifest = data / "manifest.csv"
    frame.to_csv(manifest, index=False)
    (data / "classes.txt").write_text("\n".join(class_names) + "\n", encoding="utf-8")
    pred = np.asarray(predictions)
    if pred.ndim == 2:
        conf = pred.max(axis=1).astype(np.float32)
        pred = pred.argmax(axis=1)
    else:
        conf = np.ones(n, dtype=np.float32)
    preds = Predictions(
        pred=pred.astype(np.int64),
        confidence=conf,
        n_outputs=None,
        source={"kind": "predictions", "spec": None},
    )
    settings = {"captions": False, "report": False, **settings}
    return discover(
        manifest,
        out=path,
        predictions=preds,
        embeddings=np.asarray(embeddings, dtype=np.float32),
        classes=str(data / "classes.txt"),
        clip=None,
        **settings,
    )


def planted_world(
    *,
    n_classes: int = 3,
    n_per_class: int = 120,
    d: int = 16,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val", "test"),
    rates: tuple[float, float] = (0.9, 0.05),
) -> dict[str, Any]:
    """Synthetic embeddings where a planted group of each class fails.

    Class ``c``'s examples sit around a class vector; a third of them are shifted
    along a planted direction and the model is wrong on ``rates[0]`` of those and
    ``rates[1]`` of the rest. Returns the arrays :func:`build_run` takes, plus
    ``planted`` (bool, shape (n,)) and ``directions`` (n_classes, d).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * 2.0
    dirs = rng.normal(size=(n_classes, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    n = n_classes * n_per_class
    labels = np.repeat(np.arange(n_classes), n_per_class)
    planted = rng.random(n) < 1 / 3
    x = centres[labels] + rng.normal(size=(n, d)) + 2.5 * planted[:, None] * dirs[labels]
    wrong = rng.random(n) < np.where(planted, rates[0], rates[1])
    preds = np.where(wrong, (labels + 1) % n_classes, labels)
    split = np.array([splits[i % len(splits)] for i in range(n)])
    return {
        "embeddings": x.astype(np.float32),
        "labels": labels,
        "predictions": preds,
        "splits": split,
        "planted": planted,
        "directions": dirs,
    }


def add_captions(run: Any, texts: Mapping[int, Sequence[str]] | None = None) -> Any:
    """Give every slice failure and success captions and caption checks (typed entries,
    written with ``Run.save_slices``). ``texts`` overrides the failure captions of a class."""
    from failscope.run.schema import Caption, CaptionCheck, CaptionCurve, Captions

    out = []
    for s in run.slices:
        name = s.class_name
        failure = list((texts or {}).get(s.class_index) or [
            f"a photo of a {name} on a red background", f"a blurry photo of a {name}",
            f"a photo of a small {name}",
        ])  # fmt: skip
        caps = Captions(
            failure=tuple(
                Caption(t, round(0.3 - 0.05 * j, 3), "color", "red", 0.4 + 0.1 * j)
                for j, t in enumerate(failure)
            ),
            success=(Caption(f"a sharp photo of a {name}", -0.21, "quality", "sharp", 0.9),),
            method="centroid", vocabulary="test", n_candidates=len(failure) + 1,
            reference=f"a photo of a {name}", rerank=None,
        )  # fmt: skip
        checks = tuple(
            CaptionCheck(
                text=t,
                k=(25, 50, 100),
                acc_at_k=(0.4 + 0.1 * j, None, None),
                class_acc=0.8,
                n_class=40,
                k_decision=20,
                acc_at_decision=0.3 + 0.1 * j,
                p_value=0.0004 if j == 0 else 0.31,
                margin=0.05,
                confirmed=j == 0,
                split="test",
                curve=CaptionCurve(k=(5, 10, 15, 20), acc=(0.2, 0.3, 0.3, 0.3)),
                null_p_value=0.01 if j == 0 else 0.4,
            )
            for j, t in enumerate(failure[:2])
        )
        out.append(s.replace(captions=caps, caption_checks=checks))
    run.save_slices(out)
    return run


def add_truth(run: Any, plants: Sequence[tuple[str, int, str, str, str]]) -> Any:
    """Write ``truth.json`` for planted columns of the run: ``(column, class, kind, family,
    value)`` each (the column must be a boolean metadata column of the run)."""
    from failscope.run import FORMAT_VERSION, TRUTH_JSON, write_json
    from failscope.run.schema import Plant, Truth

    ex = run.examples
    entries = []
    for column, c, kind, family, value in plants:
        polarity = "absent" if kind == "spurious" else "present"
        counts = {str(sp): int(ex.loc[ex["split"] == sp, column].sum()) for sp in set(ex["split"])}
        entries.append(
            Plant(
                name=f"{kind}_{c}_{family}_{value}",
                spec=f"{kind}:{c}:{family}={value}:0.02",
                kind=kind,
                class_index=c,
                class_name=run.class_names[c],
                family=family,
                value=value,
                rate=0.02,
                polarity=polarity,
                column=column,
                members=f"{family} == {value!r}",
                noisy_target=None,
                n_members=counts,
            )
        )
    truth = Truth(format=FORMAT_VERSION, seed=0, plants=tuple(entries))
    write_json(run.output(TRUTH_JSON), truth.to_json())
    run.add_files(TRUTH_JSON)
    return run
