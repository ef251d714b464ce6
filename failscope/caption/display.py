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

    Columns: slice (id and class), its error rate, failure captions with score,
    re-ranking accuracy on validation images ("val") and check (test acc on the
    nearest K vs the class; a check mark when confirmed), success captions.
    """
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=True)
    table.add_column("slice", style="bold")
    table.add_column("errors", justify="right")
    table.add_column("failure captions (score; val acc; check: test acc nearest K vs class)")
    table.add_column("success captions", style="dim")
    for row in caption_rows(slices, top=top):
        err_txt = _fmt_acc(row["error_rate"])
        name = escape(f"{row['slice']} {row['class_name']}")
        if row["status"] == "uncaptioned":
            table.add_row(name, err_txt, "[dim]not captioned yet[/]", "")
            continue
        lines = []
        if row["status"] == "weak":
            lines.append("[dim]weak slice: not statistically supported[/]")
        for cap in row["failure"]:
            line = f"{escape(cap['text'])}  [dim]({cap['score']:+.3f}"
            if cap["fit_acc"] is not None:
                line += f"; val {_fmt_acc(cap['fit_acc'])}"
            if cap["confirmed"] is not None:
                mark = "[green]✓[/]" if cap["confirmed"] else "[red]✗[/]"
                line += (
                    f"; {_fmt_acc(cap['acc'])}@{cap['k']} vs {_fmt_acc(cap['class_acc'])}"
                    f")[/] {mark}"
                )
            else:
                line += ")[/]"
            lines.append(line)
        success = "\n".join(escape(t) for t in row["success"])
        table.add_row(name, err_txt, "\n".join(lines), success)
    return table
