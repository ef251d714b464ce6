"""The report of a real ``failscope.discover`` run (shared tiny fixtures from tests/conftest.py)."""

from __future__ import annotations

import re

import failscope
from failscope.embed import load_clip
from failscope.report import build_report
from failscope.report._html import escape


def test_report_of_a_discover_run(image_dataset, channel_classifier_ts, tiny_clip, tmp_path):
    image_dataset.root.joinpath(image_dataset.rows[70]["path"]).unlink()  # skipped input
    clip = load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint, device="cpu")
    run = failscope.discover(
        image_dataset.manifest, out=tmp_path / "run", model=str(channel_classifier_ts), clip=clip
    )
    from failscope.caption import caption_run

    caption_run(run, clip=clip, vocab=["general"])
    out = build_report(run)
    text = out.read_text(encoding="utf-8")
    ok = [s for s in run.slices if s["status"] == "ok"]
    assert ok, "the fixture plants a slice; discover should fit at least one class"
    assert text.count('<details class="cls') == len(run.slices)
    # every thumbnail resolves against run.json's data root: no placeholder tiles
    assert text.count("<figure") > 0
    assert 'class="missing"' not in text
    # the header describes the dataset, the model and CLIP from run.json
    cards = dict(re.findall(r'<div class="k">([^<]+)</div><div class="v[^"]*">([^<]*)</div>', text))
    assert cards["Examples"] == f"{len(run.examples):,}"
    assert cards["Classes"] == str(len(run.class_names))
    assert cards["Audited model"] not in ("", "–")
    assert cards["CLIP"] not in ("", "–")
    assert "1 input skipped" in text and "missing file" in text
    # captions and caption checks from caption_run are shown, with their curves
    captioned = [s for s in run.slices if s.get("captions")]
    assert captioned
    for s in captioned:
        top = s["captions"]["failure"][0]["text"]
        assert escape(top) in text
    checked = [s for s in run.slices if s.get("caption_checks")]
    assert text.count("Caption checks") == len(checked)
    n_curves = sum(any(c["curve"]["k"] for c in s["caption_checks"]) for s in checked)
    assert len(list((run.path / "plots").glob("class-*-captions.png"))) == n_curves
    # the fitting split is named in the severity definition
    assert f"(split &#x27;{run.info['fit_split']}&#x27;)" in text
