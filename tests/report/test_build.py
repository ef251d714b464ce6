"""The report's pieces: ordering, mosaics, optional sections, escaping, scale, CLI."""

from __future__ import annotations

import base64
import html
import json
import re
import time
from html.parser import HTMLParser

import pytest
from synthetic_run import HOSTILE_CAPTIONS, HOSTILE_NAMES

import failscope
from failscope.report import build_report, parse_retrain_metrics, severity
from failscope.report._html import Markup, escape, render, tag
from failscope.run import load_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collect(HTMLParser):
    """Tags with their attributes, and all text, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(text: str) -> _Collect:
    p = _Collect()
    p.feed(text)
    return p


def overview_order(text: str) -> list[str]:
    """Class anchors in the order of the overview table's rows."""
    table = text[
        text.index('id="overview-table"') : text.index("</table>", text.index("overview-table"))
    ]
    return re.findall(r'<a href="#(class-\d+)">', table)


# --------------------------------------------------------------------------- helpers


def test_markup_escapes_by_default():
    raw = "<script>alert(\"x\")</script> & 'q'"
    assert escape(raw) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;q&#x27;"
    assert tag("td", raw, title=raw).count("<script>") == 0
    assert tag("b", Markup("<i>ok</i>")) == "<b><i>ok</i></b>"
    # concatenation keeps escaping: Markup + str escapes the str
    joined = Markup("<p>") + raw
    assert isinstance(joined, Markup) and "<script>" not in joined
    assert isinstance(raw + Markup("<p>"), Markup)
    assert render("<p>$x</p>", x=raw) == f"<p>{html.escape(raw)}</p>"
    assert tag("a", "t", href="#a", hidden=False, open=True) == '<a href="#a" open>t</a>'


def test_severity_definition():
    assert severity({"status": "ok", "error_rate_in": 0.5, "size": 10}) == 5.0
    assert severity({"status": "ok", "error_rate_in": None, "size": 10}) == 0.0
    assert severity({"status": "ok", "error_rate_in": 0.9, "size": 0}) == 0.0
    assert severity({"status": "skipped", "error_rate_in": None, "size": 0}) is None


# --------------------------------------------------------------------------- the page


def test_report_is_self_contained_and_complete(run_factory):
    run = run_factory("full", n_classes=5, skipped_classes=(3,), retrain=True, evaluation=True)
    out = build_report(run)
    assert out == run / "report.html"
    text = out.read_text(encoding="utf-8")
    p = parse(text)
    # no external resources: every src is a data URI, no link/remote script, a strict CSP
    srcs = [a["src"] for t, a in p.tags if "src" in a]
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert not [t for t, a in p.tags if t == "link"]
    assert [t for t, _ in p.tags].count("script") == 1
    assert not re.search(r"https?://", text)
    csp = next(a["content"] for t, a in p.tags if a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "img-src data:" in csp
    # header: dataset, model, CLIP, example and class counts, skipped inputs
    cards = dict(re.findall(r'<div class="k">([^<]+)</div><div class="v[^"]*">([^<]*)</div>', text))
    assert cards["Dataset"].endswith("run-images (synthetic)")
    assert cards["Audited model"] == "toy-mlp.pt (torchscript)"
    assert cards["CLIP"] == "ViT-T-world (world)"
    assert cards["Examples"] == "200" and cards["Classes"] == "5"
    assert cards["Slices fit"] == "4 (1 skipped)"
    assert cards["Created"] == "2025-01-01 12:00 UTC"
    assert "2 inputs skipped" in " ".join(p.text)
    assert cards["Discovery took"] == "2.0 s"  # embed 1.5 + fit 0.5
    timings = load_run(run).info["timings"]
    assert set(timings) == {"embed", "fit", "report"} and 0 < timings["report"] < 60
    # one overview row and one section per class; sections link from the rows
    ids = [a["id"] for t, a in p.tags if t == "details" and "cls" in (a.get("class") or "")]
    assert sorted(ids) == sorted(f"class-{c}" for c in range(5))
    assert sorted(overview_order(text)) == sorted(ids)
    assert "Severity</b> = error rate inside the slice &times; slice size" in text
    # plots sit in RUN/plots and the page embeds exactly those bytes
    plots = sorted((run / "plots").glob("*.png"))
    names = {q.name for q in plots}
    assert {"severity.png", "class-0000-scores.png", "class-0000-captions.png"} <= names
    assert "class-0003-scores.png" not in names  # skipped class: no plots
    for q in plots:
        data = q.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert base64.b64encode(data).decode() in text, q.name
    assert not list((run / "plots").glob(".*"))  # no temporary files left behind
    # shareable like any file the user writes (mkstemp alone would give 0o600)
    assert (out.stat().st_mode & 0o044) == 0o044 and (plots[0].stat().st_mode & 0o044) == 0o044
    # sections for optional parts
    assert 'id="retrain"' in text and 'id="evaluation"' in text


def test_overview_is_sorted_by_severity_with_skipped_last(run_factory):
    run = run_factory("order", n_classes=7, skipped_classes=(1, 5), captions=False)
    text = build_report(run, max_classes_expanded=0).read_text()
    slices = load_run(run).slices
    ok = [s for s in slices if s["status"] == "ok"]
    expected = sorted(ok, key=lambda s: (-severity(s), -s["cv_score"], s["class_index"]))
    expected_ids = [s["id"] for s in expected] + ["class-1", "class-5"]
    assert overview_order(text) == expected_ids
    sev = [severity(s) for s in expected]
    assert sev == sorted(sev, reverse=True) and sev[0] > sev[-1]
    # skipped classes carry their reason; no captions -> "not captioned"
    rows = text[text.index('id="overview-table"') :]
    assert rows.count("too few errors in the fitting split") >= 2
    assert "not captioned" in rows
    # sections appear in the same order
    sec = re.findall(r'<details class="cls[^"]*" id="(class-\d+)"', text)
    assert sec == expected_ids


def test_mosaics_with_missing_and_corrupt_images(run_factory):
    run = run_factory("missing", n_classes=3, n_per_class=12, missing_images=2, corrupt_images=1)
    text = build_report(run, split="all", thumbs_per_mosaic=8).read_text()
    p = parse(text)
    figures = [a for t, a in p.tags if t == "figure"]
    # 12 examples per class, all shown: 6 failure-aligned + 6 success-aligned tiles
    assert len(figures) == 3 * 12
    placeholders = text.count('class="missing"')
    assert placeholders == 3 * 3  # 2 missing + 1 corrupt per class
    thumbs = [a for t, a in p.tags if t == "img" and a["src"].startswith("data:image/jpeg")]
    assert len(thumbs) == 3 * 12 - placeholders
    # each tile is marked correct or wrong, with label/prediction in its caption
    assert all(set(a["class"].split()) & {"ok", "bad"} for a in figures)
    ex = load_run(run).examples
    n_wrong = int((~ex["correct"]).sum())
    assert sum("bad" in a["class"].split() for a in figures) == n_wrong
    assert text.count("<figcaption><span>✗ class-") == n_wrong
    assert text.count("<span>→ class-") == n_wrong
    # failure mosaic is ordered by descending failure score
    c0 = ex[ex.label == 0].sort_values("failure_score", ascending=False)
    first = text[text.index('id="class-0"') :]
    first = first[first.index("Most failure-aligned") :]
    titles = re.findall(r'<figure class="th (?:ok|bad)" title="([^"]*)"', first)[:6]
    shown_paths = [html.unescape(t).split("\n")[0] for t in titles]
    assert shown_paths == list(c0["path"].iloc[:6])


def test_heavy_parts_only_for_top_classes_and_capped(run_factory):
    run = run_factory("cap", n_classes=6, n_per_class=40)
    text = build_report(run, max_classes_expanded=2, thumbs_per_mosaic=4, split="val").read_text()
    assert text.count("<figure") == 2 * 2 * 4
    scored = sorted((run / "plots").glob("class-*-scores.png"))
    assert len(scored) == 2
    top2 = overview_order(text)[:2]
    assert {f"class-{int(q.name[6:10])}" for q in scored} == set(top2)
    assert "the fitting split (&#x27;val&#x27;)" in text
    assert text.count("Compact section") == 4
    # a rebuild with fewer expanded classes removes the stale plots
    build_report(run, max_classes_expanded=1)
    assert len(list((run / "plots").glob("class-*-scores.png"))) == 1


def test_caption_checks_table(run_factory):
    run = run_factory("checks", n_classes=2)
    text = build_report(run).read_text()
    sec = text[text.index('id="class-0"') :]
    sec = sec[sec.index("Caption checks") : sec.index("</table>", sec.index("Caption checks"))]
    heads = re.findall(r"<th[^>]*>([^<]+)</th>", sec)
    # acc@50/acc@100 are None for every caption: no empty columns
    assert heads == ["caption", "acc@25", "acc@K*", "class acc", "p", "verdict"]
    rows = sec.split("<tr>")[2:]
    assert "40.0%" in rows[0] and "30.0%" in rows[0] and "(K*=12)" in rows[0]
    assert "&lt;0.001" in rows[0] and ">confirmed<" in rows[0]
    assert "0.31" in rows[1] and ">unconfirmed<" in rows[1]
    assert "(test split)" in sec


def test_retrain_section_only_when_metrics_exist(run_factory):
    run = run_factory("noretrain", n_classes=3, retrain=False)
    text = build_report(run).read_text()
    assert 'id="retrain"' not in text and "Retraining" not in text
    assert not list((run / "plots").glob("retrain*.png"))

    run = run_factory("retrain", n_classes=3, retrain=True)
    text = build_report(run).read_text()
    section = text[text.index('id="retrain"') :]
    section = section[: section.index("</section>")]
    for method in ("audited", "erm", "sbl"):
        assert f'<td class="nowrap">{method}' in section
    # audited first (the 'before' row), best worst-slice accuracy highlighted (sbl)
    rows = re.findall(r"<td class=\"nowrap\">(\w+)", section)
    assert rows == ["audited", "erm", "sbl"]
    assert "discovered slices</th>" in section and "planted slices</th>" in section
    sbl_row = section[section.index(">sbl") :].split("</tr>")[0]
    assert "num best" in sbl_row
    assert {q.name for q in (run / "plots").glob("retrain*.png")} == {
        "retrain-discovered.png",
        "retrain-planted.png",
    }


def test_parse_retrain_metrics_reads_the_pipeline_layout():
    metrics = {
        "format": 1,
        "status": "ok",
        "methods": {
            "audited": {
                "test_accuracy": 0.8,
                "val_accuracy": 0.81,
                "slice_accuracy": {
                    "discovered": {"class-1": 0.4, "class-2": 0.6},
                    "planted": {"red": 0.2},
                },
                "worst_discovered_accuracy": 0.4,
                "mean_discovered_accuracy": 0.5,
                "worst_slice_accuracy": 0.2,
            },
            "sbl": {"test_accuracy": 0.85, "slice_accuracy": {"class-1": 0.7, "class-2": 0.9}},
        },
    }
    got = parse_retrain_metrics(metrics)
    assert list(got) == ["audited", "sbl"]
    assert got["audited"]["overall"] == 0.8 and got["audited"]["worst"] == 0.2
    assert got["audited"]["groups"]["discovered"]["mean"] == 0.5
    assert got["audited"]["groups"]["planted"]["slices"] == {"red": 0.2}
    assert got["sbl"]["groups"]["slices"]["worst"] == 0.7
    assert got["sbl"]["groups"]["slices"]["mean"] == pytest.approx(0.8)
    assert parse_retrain_metrics({"status": "no-slices", "message": "x"}) == {}


def test_evaluation_table(run_factory):
    run = run_factory("eval", n_classes=3, evaluation=True)
    text = build_report(run).read_text()
    section = text[text.index('id="evaluation"') :]
    section = section[: section.index("</section>")]
    assert "spurious-red &lt;i&gt;bg&lt;/i&gt;" in section and "<i>bg" not in section
    assert "0.830" in section and "0.590" in section and "0.730" in section  # AP, P@10
    assert "mean AP" in section and "top-1 caption hit rate" in section
    assert section.count('<span class="badge ok">yes</span>') == 3  # top-1 once, top-5 twice
    assert '<a href="#class-0">class-0</a>' in section
    assert "spurious · color=red (absent)" in section


def test_partial_run_without_examples_or_captions(run_factory):
    run = run_factory("partial", n_classes=3, captions=False)
    (run / "examples.parquet").unlink()
    text = build_report(run).read_text()
    assert text.count('<details class="cls"') == 3
    assert "No scored examples" in text and "not captioned" in text


def test_hostile_strings_render_as_text(hostile_run):
    text = (hostile_run / "report.html").read_text(encoding="utf-8")
    p = parse(text)
    # the only script element is ours; no event handler attribute anywhere
    assert [t for t, _ in p.tags].count("script") == 1
    assert not [a for _, a in p.tags if any(k.startswith("on") for k in a)]
    assert not [t for t, _ in p.tags if t == "svg"]
    assert all(a["src"].startswith("data:") for t, a in p.tags if t == "img")
    # every hostile string shows up escaped, and the parsed text holds it verbatim
    body = "".join(p.text)
    strings = HOSTILE_NAMES + [c for caps in HOSTILE_CAPTIONS.values() for c in caps]
    for s in strings:
        assert html.escape(s) in text, s
        assert s in body, s
    for raw in ("<script>window", "<img src=x", "<svg", "<!-- comment", "<b>bold"):
        assert raw not in text
    assert "&amp;amp;" in text  # "fish &amp; chips" keeps its literal ampersand entity
    assert "bad/&lt;b&gt;broken_0&lt;/b&gt;.png" in text  # skipped-input paths too


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_bidi_controls_are_neutralised_in_every_user_string(run_factory):
    names = ["\u202eant", "bee\u2066x\u2069", "cat\u200f"]
    run = run_factory(
        "bidi",
        n_classes=3,
        class_names=names,
        caption_overrides={0: ["a photo of a \u202egnp.exe", "plain \u061c one"]},
        retrain=True,
        evaluation=True,
        skipped_inputs=2,
    )
    text = (build_report(run)).read_text(encoding="utf-8")
    assert not set(BIDI) & set(text)
    assert "&lt;U+202E&gt;ant" in text and "bee&lt;U+2066&gt;x&lt;U+2069&gt;" in text
    assert "a photo of a &lt;U+202E&gt;gnp.exe" in text and "cat&lt;U+200F&gt;" in text
    assert escape("x\u202dy") == "x&lt;U+202D&gt;y" and escape(Markup("\u202e")) == "\u202e"


def test_build_report_validates_arguments(run_factory, tmp_path):
    run = run_factory("args", n_classes=2)
    with pytest.raises(failscope.InputError, match="split 'nope'"):
        build_report(run, split="nope")
    with pytest.raises(failscope.InputError, match="thumbs_per_mosaic"):
        build_report(run, thumbs_per_mosaic=0)
    with pytest.raises(failscope.InputError, match="run directory not found"):
        build_report(tmp_path / "missing")
    out = build_report(run, out=tmp_path / "sub" / "r.html")
    assert out.is_file() and not (run / "report.html").exists()
    assert failscope.build_report is build_report


def test_cli_report(run_factory, tmp_path, capsys):
    from failscope.cli import main

    run = run_factory("cli", n_classes=2)
    target = tmp_path / "cli.html"
    assert main(["report", str(run), "--out", str(target), "--thumbs", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert target.read_text().count("<figure") == 2 * 2 * 3
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_thousand_classes_build_fast_and_small(run_factory):
    run = run_factory("big", n_classes=1000, n_per_class=10, skipped_classes=range(0, 1000, 50))
    t0 = time.perf_counter()
    out = build_report(run, max_classes_expanded=10)
    seconds = time.perf_counter() - t0
    size = out.stat().st_size
    text = out.read_text()
    assert text.count('<details class="cls') == 1000
    assert text.count("<figure") <= 10 * 2 * 16
    assert len(list((run / "plots").glob("class-*.png"))) == 2 * 10
    # generous bounds: a shared 2-core machine; the benchmark reports the real numbers
    assert seconds < 45, seconds
    assert size < 4_000_000, size
    ok = [s for s in json.loads((run / "slices.json").read_text())["slices"] if s["cv_score"]]
    top = max(ok, key=lambda s: (severity(s), s["cv_score"], -s["class_index"]))
    assert overview_order(text)[0] == top["id"]
