"""The report of a real ``failscope.discover`` run (shared tiny fixtures from tests/conftest.py)."""

from __future__ import annotations

import re

import failscope
from failscope.embed import load_clip
from failscope.report import build_report, slice_file_id
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
    assert run.slices, "the fixture plants a slice; discover should find at least one"
    assert text.count('<details class="cls') == len(run.classes)
    for s in run.slices:
        assert f'id="slice-{slice_file_id(s.id)}"' in text
    # every thumbnail resolves against run.json's data root: no placeholder tiles
    assert text.count("<figure") > 0
    assert 'class="missing"' not in text
    # the header describes the dataset, the model and CLIP from run.json
    cards = dict(re.findall(r'<div class="k">([^<]+)</div><div class="v[^"]*">([^<]*)</div>', text))
    info = run.info
    assert cards["Examples"] == f"{info.n_scored:,} of {info.n_examples:,}"
    assert cards["Classes"] == str(len(run.class_names))
    assert cards["Audited model"] == f"{channel_classifier_ts.name} (torchscript)"
    assert cards["CLIP"].endswith("/tiny-test-clip.json") and info.embeddings.clip is not None
    assert "1 input skipped" in text and "missing file" in text
    # captions and caption checks from caption_run are shown in each slice's block
    assert all(s.captions is not None for s in run.slices)
    for s in run.slices:
        assert escape(s.captions.failure[0].text) in text
    checked = [s for s in run.slices if s.caption_checks]
    assert text.count("Caption checks (") == len(checked)
    assert len(list((run.path / "plots").glob("slice-*-scores.png"))) == len(run.slices)
    # the fitting split is named in the severity definition
    assert f"on the fitting split &#x27;{run.fit_split}&#x27;" in text
