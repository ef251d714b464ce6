"""Typed JSON records: every malformed file fails loudly, naming the key."""

from __future__ import annotations

import pytest

from failscope import InputError
from failscope.run.schema import MembershipRule, SkippedInput, SliceEntry, Support


def _entry() -> SliceEntry:
    return SliceEntry(
        id="8/1", class_index=8, class_name="8", rank=1, slicer="directions", status="weak",
        column=1, size=12, n_errors_in=7, error_rate_in=7 / 12, error_rate_out=0.1,
        support=Support(test="t", p_value=0.2, alpha=0.05, cv_score=0.55),
        rule=MembershipRule(score="s", cutoff=0.0, strict=True, threshold="zero", direction=3),
        confusion={"3": 5, "9": 2},
    )  # fmt: skip


def test_roundtrip_keeps_every_field():
    e = _entry()
    back = SliceEntry.from_json(e.to_json(), where="x")
    assert back == e and back.severity == 7


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("size"), r"slices\[0\] has no key 'size'"),
        (lambda d: d.update(bogus=1), r"unknown key 'bogus'"),
        (lambda d: d.update(size="12"), r"slices\[0\]\.size must be an integer, got '12'"),
        (lambda d: d.update(size=True), r"\.size must be an integer"),
        (lambda d: d.update(status="great"), r"\.status must be one of 'ok', 'weak'"),
        (lambda d: d["rule"].update(strict=1), r"\.rule\.strict must be true or false"),
        (lambda d: d["confusion"].update(x="two"), r"\.confusion\.x must be an integer"),
        (lambda d: d.update(support=[]), r"\.support must be an object"),
    ],
)
def test_malformed_entries_are_refused_naming_the_key(change, message):
    data = _entry().to_json()
    change(data)
    with pytest.raises(InputError, match=message):
        SliceEntry.from_json(data, where="slices.json: slices[0]")


def test_nullable_and_default_fields():
    assert SkippedInput.from_json({"id": 1, "path": "a", "reason": "r"}, where="x").id == 1
    data = _entry().to_json()
    data.pop("captions")  # has a default
    assert SliceEntry.from_json(data, where="x").captions is None
    data["error_rate_in"] = None  # nullable
    assert SliceEntry.from_json(data, where="x").error_rate_in is None
    data["size"] = None  # not nullable
    with pytest.raises(InputError, match="size must be an integer, got None"):
        SliceEntry.from_json(data, where="x")
