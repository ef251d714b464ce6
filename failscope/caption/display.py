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

    Columns: class, error rate, failure captions with score, re-ranking accuracy
    on validation images ("val") and check (test acc on the nearest K vs the
    class; a check mark when confirmed), success captions.
    """
    from rich.table import Table

    table = Table(title=title, show_lines=True)
    table.add_column("class", style="bold")
    table.add_column("errors", justify="right")
    table.add_column("failure captions (score; val acc; check: test acc nearest K vs class)")
    table.add_column("success captions", style="dim")
    by_name = {s.get("class_name"): s for s in slices}
    for row in caption_rows(slices, top=top):
        s = by_name[row["class_name"]]
        err = s.get("error_rate")
        err_txt = "-" if err is None else f"{100 * err:.0f}%"
        if row["status"] == "skipped":
            table.add_row(str(row["class_name"]), err_txt, f"[dim]skipped: {row['reason']}[/]", "")
            continue
        if row["status"] == "uncaptioned":
            table.add_row(str(row["class_name"]), err_txt, "[dim]not captioned yet[/]", "")
            continue
        lines = []
        for cap in row["failure"]:
            line = f"{cap['text']}  [dim]({cap['score']:+.3f}"
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
        table.add_row(str(row["class_name"]), err_txt, "\n".join(lines), "\n".join(row["success"]))
    return table
