"""Write small but complete synthetic run directories for the report's tests and benchmark.

``make_run`` writes tiny PNGs and every part of a run directory with the writers in
``failscope.run``; each optional part (captions, caption checks, retrain metrics,
evaluation, skipped inputs, missing images) can be switched on or off.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from failscope.run import (
    EXAMPLES,
    FORMAT_VERSION,
    RETRAIN_DIR,
    RUN_JSON,
    SLICES_JSON,
    write_json,
    write_parquet,
)

#: Class names and captions that try to inject HTML or JavaScript into the report.
HOSTILE_NAMES = [
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned = 2">',
    "fish &amp; chips",
    "plain",
]
HOSTILE_CAPTIONS = {
    0: ["<script>window.__pwned = 3</script> on a red background", "a 'quoted' & <b>bold</b> one"],
    1: ['"><svg onload="window.__pwned = 4">', "$x^2$ \\ back\\slash"],
    2: ["<!-- comment --> ]]> </details></section>", "plain caption"],
}

COLORS = ["red", "green", "blue", "black"]
_RGB = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "black": (20, 20, 20)}


def write_images(folder: Path, n: int, *, size: int = 16, seed: int = 0) -> list[str]:
    """Write ``n`` tiny RGB PNGs (a coloured block on white) and return their names."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        arr = np.full((size, size, 3), 255, np.uint8)
        color = _RGB[COLORS[i % len(COLORS)]]
        x0, y0 = rng.integers(0, size // 2, 2)
        arr[y0 : y0 + size // 2, x0 : x0 + size // 2] = color
        name = f"img_{i:04d}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


def make_run(
    path: Path,
    *,
    n_classes: int = 4,
    n_per_class: int = 40,
    class_names: Sequence[str] | None = None,
    skipped_classes: Sequence[int] = (),
    captions: bool = True,
    caption_overrides: dict[int, list[str]] | None = None,
    checks: bool = True,
    retrain: bool = False,
    evaluation: bool = False,
    n_images: int = 24,
    missing_images: int = 0,
    corrupt_images: int = 0,
    skipped_inputs: int = 2,
    seed: int = 0,
) -> Path:
    """Write a synthetic run directory at ``path`` and return it.

    Class ``c`` has slice size ``size_c`` and in-slice error rate chosen so that the
    severity order is known: ``error_rate_in`` = 0.9 - 0.6 * c / n_classes and
    ``size`` = 10 + (c % 3), so severity decreases with c except for the size wiggle
    (tests recompute the expected order from the entries).

    Parameters
    ----------
    path : Path
        The run directory (created).
    n_classes, n_per_class : int
        Classes and examples per class (half "val", the fitting split, half "test").
    class_names : sequence of str, optional
        Default ``class-0``...; may be hostile strings.
    skipped_classes : sequence of int
        Classes marked skipped (no direction), with a reason.
    captions, checks, retrain, evaluation : bool
        Write captions / caption checks into slices.json, ``retrain/metrics.json``,
        ``evaluation.json`` (+ ``truth.json``).
    caption_overrides : dict, optional
        ``{class: [failure caption texts]}`` replacing the generated captions.
    n_images : int
        Distinct PNG files written; examples reuse them cyclically.
    missing_images, corrupt_images : int
        The first ``missing_images`` examples of every class point at files that do not
        exist; the next ``corrupt_images`` point at a file that is not an image.
    skipped_inputs : int
        Entries in run.json's ``skipped`` list.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    img_dir = path.parent / f"{path.name}-images"
    names_on_disk = write_images(img_dir, n_images, seed=seed)
    (img_dir / "corrupt.png").write_bytes(b"this is not a png")
    names = [str(n) for n in class_names] if class_names is not None else None
    names = names or [f"class-{c}" for c in range(n_classes)]
    assert len(names) == n_classes

    rows: list[dict[str, Any]] = []
    slices = []
    for c in range(n_classes):
        n = n_per_class
        score = rng.normal(size=n)
        # errors concentrate where the score is high
        p_wrong = 1 / (1 + np.exp(-3 * (score - 0.5)))
        wrong = rng.random(n) < p_wrong
        split = np.array(["val", "test"] * (n // 2) + ["val"] * (n % 2))
        skipped = c in skipped_classes
        for i in range(n):
            k = len(rows)
            if i < missing_images:
                p = f"missing/nope_{c}_{i}.png"
            elif i < missing_images + corrupt_images:
                p = "corrupt.png"
            else:
                p = names_on_disk[k % len(names_on_disk)]
            pred = c if not wrong[i] else (c + 1) % n_classes
            rows.append(
                {
                    "id": k,
                    "path": p,
                    "split": str(split[i]),
                    "label": c,
                    "pred": pred,
                    "correct": not wrong[i],
                    "failure_score": float("nan") if skipped else float(score[i]),
                    "slice": (not skipped) and bool(score[i] > 0),
                    "confidence": float(rng.uniform(0.3, 1.0)),
                    "color": COLORS[k % len(COLORS)],
                    "planted_red": bool(c == 0 and COLORS[k % len(COLORS)] == "red"),
                }
            )
        fit = split == "val"
        size = min(int(fit.sum()), 10 + (c % 3))
        rate_in = 0.9 - 0.6 * c / max(n_classes, 1)
        entry: dict[str, Any] = {
            "id": f"class-{c}",
            "class_index": c,
            "class_name": names[c],
            "status": "skipped" if skipped else "ok",
            "reason": "too few errors in the fitting split" if skipped else None,
            "n_fit": int(fit.sum()),
            "n_errors_fit": int(wrong[fit].sum()),
            "error_rate": float(wrong[fit].mean()),
            "cv_score": None if skipped else round(0.6 + 0.3 * rng.random(), 3),
            "cv_metric": "balanced_accuracy",
            "C": None if skipped else 1.0,
            "threshold": {"mode": "zero", "value": 0.0, "cutoff": 0.0},
            "size": 0 if skipped else size,
            "error_rate_in": None if skipped else rate_in,
            "error_rate_out": None if skipped else 0.1,
            "captions": None,
            "caption_checks": None,
        }
        if captions and not skipped:
            fail_txt = (caption_overrides or {}).get(c) or [
                f"a photo of a {names[c]} on a red background",
                f"a blurry photo of a {names[c]}",
                f"a small {names[c]}",
            ]
            entry["captions"] = {
                "failure": [
                    {"text": t, "score": round(0.3 - 0.05 * j, 3)} for j, t in enumerate(fail_txt)
                ],
                "success": [
                    {"text": f"a sharp photo of a {names[c]}", "score": -0.21},
                    {"text": f"a large {names[c]}", "score": -0.25},
                ],
            }
            if checks:
                ks = [5, 10, 15, 20]
                entry["caption_checks"] = [
                    {
                        "text": t,
                        "k": [25, 50, 100],
                        "acc_at_k": [0.4 + 0.1 * j, None, None],
                        "class_acc": float(1 - wrong.mean()),
                        "confirmed": j == 0,
                        "k_decision": 12,
                        "acc_at_decision": 0.3 + 0.1 * j,
                        "p_value": 0.0004 if j == 0 else 0.31,
                        "split": "test",
                        "curve": {"k": ks, "acc": [0.2 + 0.1 * j + 0.02 * q for q in range(4)]},
                    }
                    for j, t in enumerate(fail_txt[:2])
                ]
        slices.append(entry)

    write_parquet(path / EXAMPLES, pd.DataFrame(rows))
    write_json(path / SLICES_JSON, {"format": FORMAT_VERSION, "slices": slices})
    write_json(
        path / RUN_JSON,
        {
            "format": FORMAT_VERSION,
            "config": {
                "data": str(img_dir / "manifest.csv"),
                "model": "toy-mlp.pt",
                "clip": "ViT-T-world",
                "clip_pretrained": "world",
                "fit_split": "val",
            },
            "seed": seed,
            "classes": names,
            "n_examples": len(rows) + skipped_inputs,
            "fit_split": "val",
            "skipped": [
                {"id": 10_000 + i, "path": f"bad/<b>broken_{i}</b>.png", "reason": "missing file"}
                for i in range(skipped_inputs)
            ],
            "data": {"kind": "synthetic", "root": str(img_dir), "n_classes": n_classes},
            "model": {"kind": "torchscript", "spec": "/models/toy-mlp.pt"},
            "embeddings": {
                "path": "embeddings.npy",
                "source": "clip",
                "clip": {"name": "ViT-T-world", "pretrained": "world"},
            },
            "created": "2025-01-01T12:00:00Z",
            "timings": {"embed": 1.5, "fit": 0.5},
        },
    )
    ok = [c for c in range(n_classes) if c not in skipped_classes]
    if retrain:
        metrics = {"format": 1, "status": "ok", "methods": {}}
        for m, boost in (("audited", 0.0), ("erm", 0.02), ("sbl", 0.15)):
            disc = {f"class-{c}": min(1.0, 0.3 + 0.05 * c + boost) for c in ok}
            planted = {"red": 0.2 + boost, "blur": 0.4 + boost}
            metrics["methods"][m] = {
                "test_accuracy": 0.8 + boost / 3,
                "slice_accuracy": {"discovered": disc, "planted": planted},
                "worst_discovered_accuracy": min(disc.values()) if disc else None,
                "mean_discovered_accuracy": float(np.mean(list(disc.values()))) if disc else None,
                "worst_slice_accuracy": min([*disc.values(), *planted.values()]),
            }
        write_json(path / RETRAIN_DIR / "metrics.json", metrics)
    if evaluation:
        write_json(
            path / "truth.json",
            {"format": 1, "plants": [{"name": "red", "class": 0, "attribute": "color=red"}]},
        )
        plants = [
            ("spurious-red <i>bg</i>", "spurious", 0, "color", "red", "absent", 0.83, True),
            ("rare-small", "rare", min(1, n_classes - 1), "size", "small", "present", 0.59, False),
        ]
        rows_eval = [
            {
                "name": name,
                "kind": kind,
                "class": c,
                "family": fam,
                "value": val,
                "polarity": pol,
                "n_class": 20,
                "n_members": 6,
                "base_rate": 0.3,
                "acc_overall": 0.9,
                "acc_in_slice": 0.4,
                "discovered_status": "ok",
                "average_precision": ap,
                "precision_at_10": ap - 0.1,
                "precision_at_25": None,
                "slice_size": 8,
                "slice_precision": 0.5,
                "slice_recall": 0.66,
                "caption_end": "success" if pol == "absent" else "failure",
                "top1_hit": hit,
                "top5_hit": True,
                "top_captions": [f"a photo of a {names[c]} on a {val} background"],
            }
            for name, kind, c, fam, val, pol, ap, hit in plants
        ]
        write_json(
            path / "evaluation.json",
            {
                "format": 1,
                "split": "test",
                "ks": [10, 25],
                "plants": rows_eval,
                "summary": {
                    "n_plants": 2,
                    "mean_average_precision": 0.71,
                    "mean_precision_at_10": 0.61,
                    "mean_precision_at_25": None,
                    "top1_caption_hit_rate": 0.5,
                    "top5_caption_hit_rate": 1.0,
                },
            },
        )
    return path
