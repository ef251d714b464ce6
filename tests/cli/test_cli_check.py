"""``failscope check``: exit 0 when the bars are met, 1 when not, 2 on bad input."""

from __future__ import annotations

import json

import pytest

from failscope.run import SLICES_JSON, load_run, read_json, write_json
from tests.bad_inputs.harness import assert_one_line_error, run_cli


@pytest.fixture
def run4(synthetic_run):
    # four classes; in-slice error rates 0.90, 0.75, 0.60, 0.50 with sizes 10, 12, 15, 10
    return synthetic_run(n_classes=4)


def fit_error_rate(run):
    ex = load_run(run).examples
    return 1.0 - ex[ex["split"] == "val"]["correct"].mean()


def test_slice_bar(run4):
    res = run_cli("check", run4, "--max-slice-error-rate", "0.7")
    assert res.rc == 1, res.err
    lines = res.out.strip().splitlines()
    assert lines == [
        "FAIL slice 0/0 of class 'class-0': error rate 90.0% in 10 examples > 70.0%",
        "FAIL slice 1/0 of class 'class-1': error rate 75.0% in 12 examples > 70.0%",
    ]
    res = run_cli("check", run4, "--max-slice-error-rate", "0.9")
    assert res.rc == 0 and res.out.startswith("PASS ") and "4 slice(s) counted" in res.out


def test_small_slices_do_not_count(run4):
    res = run_cli("check", run4, "--max-slice-error-rate", "0.5", "--min-slice-size", "11")
    assert res.rc == 1
    assert [ln.split()[2] for ln in res.out.splitlines()] == ["1/0", "2/0"]


def test_error_rate_bar(run4):
    rate = fit_error_rate(run4)
    res = run_cli("check", run4, "--max-error-rate", f"{rate - 0.01:.4f}")
    assert res.rc == 1 and f"error rate {100 * rate:.1f}%" in res.out
    assert run_cli("check", run4, "--max-error-rate", f"{rate + 0.01:.4f}").rc == 0


def test_weak_slices_do_not_fail_by_default(run4):
    data = read_json(run4 / SLICES_JSON, what="slices")
    for s in data["slices"][:2]:
        s["status"] = "weak"
    write_json(run4 / SLICES_JSON, data)
    assert run_cli("check", run4, "--max-slice-error-rate", "0.7").rc == 0
    res = run_cli("check", run4, "--max-slice-error-rate", "0.7", "--include-weak")
    assert res.rc == 1 and "slice 0/0 (weak)" in res.out


def test_json(run4):
    res = run_cli("check", run4, "--max-slice-error-rate", "0.8", "--json")
    assert res.rc == 1
    doc = json.loads(res.out)
    assert doc["passed"] is False and len(doc["failures"]) == 1
    assert doc["checked"]["slices"] == {"counted": 4, "max": 0.8}


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        ((), ("--max-slice-error-rate", "--max-error-rate")),
        (("--max-slice-error-rate", "1.5"), ("--max-slice-error-rate=1.5", "[0, 1]")),
        (("--max-error-rate", "nan"), ("--max-error-rate",)),
        (("--max-error-rate", "0.1", "--min-slice-size", "0"), ("--min-slice-size",)),
    ],
)
def test_bad_input_exits_2(run4, args, parts):
    assert_one_line_error(run_cli("check", run4, *args), "check", *parts)


def test_missing_run_exits_2(tmp_path):
    res = run_cli("check", tmp_path / "nope", "--max-error-rate", "0.1")
    assert_one_line_error(res, "check", "run directory not found", str(tmp_path / "nope"))


def test_help_has_examples():
    res = run_cli("check", "--help")
    assert res.rc == 0
    for part in ("examples:", "--max-slice-error-rate 0.3", "exit status:", "weak"):
        assert part in res.out
