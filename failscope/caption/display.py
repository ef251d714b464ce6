"""Print-free views of captioned slices, for the CLI commands (caption, discover, demo)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["caption_rows", "caption_table"]


def _check_for(entry: Any, text: str) -> Any:
    for chk in entry.caption_checks or ():
        if chk.text == text:
            return chk
    return None


def _fmt_acc(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def caption_rows(slices: Sequence[Any], *, top: int = 3) -> list[dict[str, Any]]:
    """One row per slice: its top failure/success captions and their checks.

    Parameters
    ----------
    slices : sequence of SliceEntry
        A run's slices (e.g. the return value of ``caption_run``).
    top : int, default=3
        Captions per slice.

    Returns
    -------
    list of dict
        ``slice`` (its id), ``class_name``, ``status`` ("ok", "weak" or
        "uncaptioned"), ``error_rate`` (inside the slice), ``failure`` (list of
        ``{"text", "score", "fit_acc", "confirmed", "acc", "class_acc", "k"}``;
        ``fit_acc`` is the re-ranking accuracy on validation images, None if not
        re-ranked; the check fields are None without a check) and ``success`` (texts).
    """
    rows = []
    for s in slices:
        caps = s.captions
        row: dict[str, Any] = {
            "slice": s.id,
            "class_name": s.class_name,
            "status": s.status if caps else "uncaptioned",
            "error_rate": s.error_rate_in,
            "failure": [],
            "success": [],
        }
        if caps:
            for cap in caps.failure[:top]:
                chk = _check_for(s, cap.text)
                row["failure"].append(
                    {
                        "text": cap.text,
                        "score": cap.score,
                        "fit_acc": cap.fit_acc,
                        "confirmed": None if chk is None else chk.confirmed,
                        "acc": None if chk is None else chk.acc_at_decision,
                        "class_acc": None if chk is None else chk.class_acc,
                        "k": None if chk is None else chk.k_decision,
                    }
                )
            row["success"] = [cap.text for cap in caps.success[:top]]
        rows.append(row)
    return rows


def caption_table(
    slices: Sequence[Any], *, top: int = 3, title: str | None = "Failure captions"
) -> Any:
    """A ``rich.table.Table`` of each slice's top failure captions (not printed).

    One row per failure caption: the slice (first row only), its error rate, the
    caption, its score, its re-ranking accuracy on validation images ("val") and its
    check (test accuracy of the K images nearest the caption vs the whole class; a
    check mark when confirmed); then a dim row with the success captions. Fits 80
    columns: numbers never wrap, captions and names fold; every user string is
    literal text (never rich markup).
    """
    from rich.text import Text

    from failscope.cli._tables import literal, new_table, num, text

    table = new_table(
        title,
        caption="err: error rate in the slice; score: ranking score; val: model accuracy on "
        "the validation images nearest the caption (re-ranking); check: test accuracy of the "
        "K nearest test images vs the class (✓ confirmed, ✗ not)",
    )
    text(table, "slice", ratio=1)
    num(table, "err")
    text(table, "failure caption", ratio=3)
    for col in ("score", "val", "check"):
        num(table, col)
    for row in caption_rows(slices, top=top):
        err_txt = _fmt_acc(row["error_rate"])
        name = literal(f"{row['slice']} {row['class_name']}")
        if row["status"] == "uncaptioned":
            note = Text("not captioned yet", style="dim")
            table.add_row(name, err_txt, note, "", "", "", end_section=True)
            continue
        rows = []
        if row["status"] == "weak":
            rows.append([Text("weak slice: not statistically supported", style="dim"), "", "", ""])
        for cap in row["failure"]:
            check = Text("-")
            if cap["confirmed"] is not None:
                mark = ("✓", "green") if cap["confirmed"] else ("✗", "red")
                check = Text(f"{_fmt_acc(cap['acc'])}@{cap['k']} vs {_fmt_acc(cap['class_acc'])} ")
                check.append(*mark)
            rows.append(
                [literal(cap["text"]), f"{cap['score']:+.3f}", _fmt_acc(cap["fit_acc"]), check]
            )
        if row["success"]:
            rows.append(
                [Text("success end: " + "; ".join(row["success"]), style="dim"), "", "", ""]
            )
        for i, cells in enumerate(rows):
            first = i == 0
            table.add_row(
                name if first else "", err_txt if first else "", *cells,
                end_section=i == len(rows) - 1,
            )  # fmt: skip
    return table
