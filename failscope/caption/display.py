"""Print-free views of captioned slices, for the CLI commands (caption, discover, demo)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["caption_rows", "caption_table"]


def _check_for(entry: dict[str, Any], text: str) -> dict[str, Any] | None:
    for chk in entry.get("caption_checks") or []:
        if chk.get("text") == text:
            return chk
    return None


def _fmt_acc(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def caption_rows(slices: Sequence[dict[str, Any]], *, top: int = 3) -> list[dict[str, Any]]:
    """One row per class: its top failure/success captions and their checks.

    Parameters
    ----------
    slices : sequence of dict
        ``slices.json`` entries (e.g. the return value of ``caption_run``).
    top : int, default=3
        Captions per class.

    Returns
    -------
    list of dict
        ``class_name``, ``status`` ("ok", "skipped" or "uncaptioned"), ``reason``,
        ``failure`` (list of ``{"text", "score", "fit_acc", "confirmed", "acc",
        "class_acc", "k"}``; ``fit_acc`` is the re-ranking accuracy on validation
        images, None if not re-ranked; the check fields are None without a check)
        and ``success`` (texts).
    """
    rows = []
    for s in slices:
        caps = s.get("captions")
        row: dict[str, Any] = {
            "class_name": s.get("class_name"),
            "status": s.get("status") if caps or s.get("status") != "ok" else "uncaptioned",
            "reason": s.get("reason"),
            "failure": [],
            "success": [],
        }
        if caps:
            for cap in caps.get("failure", [])[:top]:
                chk = _check_for(s, cap["text"])
                row["failure"].append(
                    {
                        "text": cap["text"],
                        "score": cap["score"],
                        "fit_acc": cap.get("fit_acc"),
                        "confirmed": None if chk is None else chk.get("confirmed"),
                        "acc": None if chk is None else chk.get("acc_at_decision"),
                        "class_acc": None if chk is None else chk.get("class_acc"),
                        "k": None if chk is None else chk.get("k_decision"),
                    }
                )
            row["success"] = [cap["text"] for cap in caps.get("success", [])[:top]]
        rows.append(row)
    return rows


def caption_table(
    slices: Sequence[dict[str, Any]], *, top: int = 3, title: str | None = "Failure captions"
) -> Any:
    """A ``rich.table.Table`` of each class's top failure captions (not printed).

    One row per failure caption: class (first row only), the class's error rate, the
    caption, its score, its re-ranking accuracy on validation images ("val") and its
    check (test accuracy of the K images nearest the caption vs the whole class; a
    check mark when confirmed); then a dim row with the success captions. Fits 80
    columns: numbers never wrap, captions and class names fold; every user string is
    literal text (never rich markup).
    """
    from rich.text import Text

    from failscope.cli._tables import literal, new_table, num, text

    table = new_table(
        title,
        caption="err: class error rate; score: ranking score; val: model accuracy on the "
        "validation images nearest the caption (re-ranking); check: test accuracy of the "
        "K nearest test images vs the class (✓ confirmed, ✗ not)",
    )
    text(table, "class", ratio=1)
    num(table, "err")
    text(table, "failure caption", ratio=3)
    for col in ("score", "val", "check"):
        num(table, col)
    by_name = {s.get("class_name"): s for s in slices}
    for row in caption_rows(slices, top=top):
        s = by_name[row["class_name"]]
        err = s.get("error_rate")
        err_txt = "-" if err is None else f"{100 * err:.0f}%"
        name = literal(row["class_name"])
        if row["status"] in ("skipped", "uncaptioned"):
            note = (
                f"skipped: {row['reason']}" if row["status"] == "skipped" else "not captioned yet"
            )
            table.add_row(name, err_txt, Text(note, style="dim"), "", "", "", end_section=True)
            continue
        rows = []
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
        if not rows:
            rows.append([Text("no caption", style="dim"), "", "", ""])
        for i, cells in enumerate(rows):
            first = i == 0
            table.add_row(
                name if first else "", err_txt if first else "", *cells,
                end_section=i == len(rows) - 1,
            )  # fmt: skip
    return table
