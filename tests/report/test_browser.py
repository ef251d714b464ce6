"""Open reports in a real headless Chromium (Debian's package) over the DevTools protocol.

Skipped when Chromium is absent, except under ``CI=true``, where a missing browser fails.
"""

from __future__ import annotations

import io

import numpy as np
from synthetic_run import HOSTILE_CAPTIONS, HOSTILE_NAMES

from failscope.report import build_report, slice_file_id
from failscope.run import load_run


def _not_blank(png: bytes) -> tuple[int, float]:
    from PIL import Image

    im = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    colours = len(np.unique(im.reshape(-1, 3), axis=0))
    return colours, float(im.std())


def test_report_opens_in_chromium(chromium, browser_run):
    run = browser_run
    slices = run.slices
    sliceless = [c for c in run.classes if c.n_slices == 0]
    page = chromium.open((run.path / "report.html").as_uri())
    assert page.errors == []
    facts = page.evaluate(
        """({
          title: document.title,
          rows: document.querySelectorAll('#overview-table tbody tr').length,
          sections: Array.from(document.querySelectorAll('details.cls')).map(d => d.id),
          slices: Array.from(document.querySelectorAll('details.cls .slice')).map(d => d.id),
          weak: document.querySelectorAll('.slice.weak .badge.weak').length,
          open: document.querySelectorAll('details.cls[open]').length,
          thumbs: document.querySelectorAll('figure.th').length,
          broken: Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0)
                  .length,
          plots: document.querySelectorAll('img.plot').length,
          retrain: !!document.getElementById('retrain'),
          evaluation: !!document.getElementById('evaluation'),
          width: document.documentElement.scrollWidth,
        })"""
    )
    assert facts["title"].startswith("failscope report")
    assert facts["rows"] == len(slices) + len(sliceless)
    assert sorted(facts["sections"]) == sorted(f"class-{c.class_index}" for c in run.classes)
    assert sorted(facts["slices"]) == sorted(f"slice-{slice_file_id(s.id)}" for s in slices)
    assert facts["weak"] == sum(s.status == "weak" for s in slices) > 0
    assert facts["open"] == 3
    assert facts["thumbs"] > 0 and facts["plots"] > 0 and facts["broken"] == 0
    assert facts["retrain"] and facts["evaluation"]
    assert facts["width"] <= 1280  # no horizontal overflow at a laptop width

    # every embedded image decodes
    decoded = page.evaluate(
        """Promise.all(Array.from(document.images).map(
             i => i.decode().then(() => i.naturalWidth > 0, () => false)
           )).then(r => r.every(Boolean) && r.length)"""
    )
    assert decoded and decoded >= facts["thumbs"]

    # a slice's link opens its (collapsed) class section and shows the slice
    closed = page.evaluate(
        "Array.from(document.querySelectorAll('details.cls:not([open]) .slice')).map(d => d.id)"
    )
    assert closed
    page.evaluate(f"document.querySelector('#overview-table a[href=\"#{closed[0]}\"]').click()")
    assert page.evaluate(f"document.getElementById('{closed[0]}').closest('details').open")
    assert page.evaluate("location.hash") == f"#{closed[0]}"
    # the filter box matches class names and slice ids
    page.evaluate(
        "const f = document.getElementById('class-filter');"
        "f.value = 'class-1'; f.dispatchEvent(new Event('input'))"
    )
    visible = page.evaluate(
        "Array.from(document.querySelectorAll('#overview-table tbody tr'))"
        ".filter(r => !r.hidden).length"
    )
    assert visible == sum("class-1" in s.class_name for s in slices) + sum(
        "class-1" in c.class_name for c in sliceless
    )
    page.evaluate(
        "const g = document.getElementById('class-filter');"
        "g.value = '2/1'; g.dispatchEvent(new Event('input'))"
    )
    shown = page.evaluate(
        "Array.from(document.querySelectorAll('#overview-table tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.cells[1].textContent)"
    )
    assert shown == ["2/1"]
    page.evaluate("document.getElementById('expand-all').click()")
    assert page.evaluate("document.querySelectorAll('details.cls:not([open])').length") == 0
    # sorting by a column reorders the rows
    page.evaluate("document.querySelector('#overview-table th:nth-child(3)').click()")
    names = page.evaluate(
        "Array.from(document.querySelectorAll('#overview-table tbody tr td:nth-child(3)'))"
        ".map(td => td.textContent)"
    )
    assert names == sorted(names) and len(set(names)) > 1

    png = page.screenshot()
    colours, spread = _not_blank(png)
    assert colours > 50 and spread > 10, (colours, spread)
    assert page.errors == []


def test_demo_report_opens_in_chromium(chromium, demo_run):
    """The report of a real demo run: no console errors, overview + one section per class."""
    run = load_run(demo_run)
    page = chromium.open((demo_run / "report.html").as_uri())
    facts = page.evaluate(
        """({
          rows: document.querySelectorAll('#overview-table tbody tr').length,
          sections: Array.from(document.querySelectorAll('details.cls')).map(d => d.id),
          slices: document.querySelectorAll('details.cls .slice').length,
          thumbs: document.querySelectorAll('figure.th').length,
          retrain: !!document.getElementById('retrain'),
          evaluation: !!document.getElementById('evaluation'),
          text: document.body.innerText,
        })"""
    )
    assert page.errors == []
    assert len(run.classes) == 10 and len(facts["sections"]) == 10
    assert facts["slices"] == len(run.slices) > 0
    assert facts["rows"] == len(run.slices) + sum(c.n_slices == 0 for c in run.classes)
    assert facts["thumbs"] > 0 and facts["retrain"] and facts["evaluation"]
    assert "blurry" in facts["text"] and "small" in facts["text"]  # captions name the plants
    colours, spread = _not_blank(page.screenshot())
    assert colours > 50 and spread > 10, (colours, spread)
    assert page.errors == []


def test_hostile_report_runs_no_injected_code(chromium, hostile_run):
    page = chromium.open((hostile_run.path / "report.html").as_uri())
    assert page.errors == []  # an injected script or image would also trip the CSP
    assert page.evaluate("typeof window.__pwned") == "undefined"
    names = page.evaluate(
        "Array.from(document.querySelectorAll('details.cls > summary .name'))"
        ".map(e => e.textContent)"
    )
    assert sorted(names) == sorted(HOSTILE_NAMES)
    links = page.evaluate(
        "Array.from(document.querySelectorAll('#overview-table tbody td.name a'))"
        ".map(a => a.textContent)"
    )
    assert set(links) == set(HOSTILE_NAMES)
    assert len(links) == len(hostile_run.slices) + sum(c.n_slices == 0 for c in hostile_run.classes)
    captions = page.evaluate(
        "Array.from(document.querySelectorAll('ol.caps.failure li'))"
        ".map(li => li.firstChild.textContent)"
    )
    for caps in HOSTILE_CAPTIONS.values():
        for c in caps:
            assert c in captions
    assert page.evaluate("document.querySelectorAll('script').length") == 1
    assert page.evaluate("document.querySelectorAll('svg, [onerror], [onload]').length") == 0
    page.evaluate("document.getElementById('expand-all').click()")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.errors == []


def test_thousand_class_report_opens_quickly(chromium, run_factory):
    run = run_factory("big-browser", n_classes=1000, n_per_class=20, captions=False)
    out = build_report(run, max_classes_expanded=5, thumbs_per_mosaic=3)
    page = chromium.open(out.as_uri(), timeout=30)
    assert page.errors == []
    load_ms = page.evaluate(
        "performance.getEntriesByType('navigation')[0].loadEventEnd"
        " - performance.getEntriesByType('navigation')[0].startTime"
    )
    assert page.evaluate("document.querySelectorAll('details.cls').length") == 1000
    assert load_ms < 10_000, load_ms
