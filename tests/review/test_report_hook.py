"""Annotations are shown in ``failscope report``."""

from __future__ import annotations

import failscope
from failscope.report import build_report


def test_the_report_shows_each_slice_annotation_and_note(make_run):
    run = make_run()
    a, b = (s.id for s in run.slices[:2])
    failscope.annotate(run, a, "spurious", note="reads the <b>background</b>")
    failscope.annotate(run, b, "not-a-failure")
    html = build_report(run).read_text(encoding="utf-8")
    assert html.count("annotated: spurious") == 1 and html.count("annotated: not a failure") == 1
    assert "annotated: core" not in html
    assert "reads the &lt;b&gt;background&lt;/b&gt;" in html  # the note, escaped
