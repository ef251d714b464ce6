"""The tautology check on a demo run: the world CLIP's embeddings vs the audited CNN's own features.

``failscope demo`` leaves both in its run directory: the world CLIP's embeddings
(``Run.embeddings()``) and, from retraining, the audited CNN's penultimate features
(``cache/retrain_features.npy``, whose final linear layer gives the model's
predictions exactly). This script runs :func:`failscope.evidence.tautology_check`
on each, on the whole run and on the fitting split, and fits
:class:`~failscope.ErrorDirections` on each to show what the check guards against.

Usage::

    failscope demo --out /tmp/demo                      # once (a few minutes)
    python benchmarks/tautology.py /tmp/demo
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import failscope
from failscope import ErrorDirections
from failscope.evidence import tautology_check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a failscope demo run directory")
    args = parser.parse_args()
    features = args.run / "cache" / "retrain_features.npy"
    if not features.exists():
        raise SystemExit(f"{features} is missing: run 'failscope demo' (with retraining) first")
    examples = pd.read_parquet(args.run / "examples.parquet")
    labels, pred, split = (examples[c].to_numpy() for c in ("label", "pred", "split"))
    spaces = {
        "world CLIP embeddings": np.asarray(failscope.load_run(args.run).embeddings()),
        "audited CNN penultimate features": np.load(features),
    }
    val, train = np.flatnonzero(split == "val"), np.flatnonzero(split == "train")
    print(
        "| embeddings | rows | mimicry | recovery | held-out errors | flagged | time (s) "
        "| median CV AUROC of the directions |\n|---|---|---:|---:|---:|---|---:|---:|"
    )
    for name, x in spaces.items():
        est = ErrorDirections().fit(x, labels, pred, rows=val, reference_rows=train)
        for rows_name, rows in (("all", np.arange(len(x))), ("val", val)):
            t0 = time.perf_counter()
            r = tautology_check(x[rows], labels[rows], pred[rows])
            print(
                f"| {name} | {rows_name} | {r.mimicry:.3f} | {r.recovery:.3f} | {r.n_errors} "
                f"| {'yes' if r.tautological else 'no'} | {time.perf_counter() - t0:.2f} "
                f"| {np.nanmedian(est.cv_auroc_):.3f} |"
            )


if __name__ == "__main__":
    main()
