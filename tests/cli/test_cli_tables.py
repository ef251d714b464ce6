"""Every result table fits 80 columns, keeps numbers whole, and prints user strings as typed."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from failscope.caption.display import caption_table
from failscope.cli import demo as demo_cli
from failscope.cli.discover import print_summary
from failscope.cli.evaluate import print_evaluation
from failscope.cli.retrain import print_metrics
from failscope.run import load_run

#: Class names that rich would read as markup or emoji codes.
MARKUP_NAMES = ["[/bold]ant", "[red]bee", ":cat:"]
LONG = "a-class-name-much-too-long-for-any-column-of-an-eighty-column-terminal"


def console80() -> Console:
    return Console(file=io.StringIO(), width=80, record=True, color_system=None)


#: Summary lines under the tables are never wrapped, so that a path in them stays whole.
UNWRAPPED = ("run written to ", "skipped inputs: ", "2 training slice(s)")


def assert_fits(console: Console, numbers: list[str]) -> str:
    text = console.export_text()
    lines = text.splitlines()
    too_long = [ln for ln in lines if len(ln) > 80 and not ln.startswith(UNWRAPPED)]
    assert not too_long, too_long
    for n in numbers:
        assert any(n in ln for ln in lines), (n, text)
    return text


def test_discover_summary(synthetic_run):
    run = load_run(synthetic_run(n_classes=4, class_names=[LONG, *MARKUP_NAMES[:3]]))
    c = console80()
    print_summary(run, console=c)
    numbers = []
    for s in run.slices:
        numbers += [f"{100 * s.error_rate_in:.1f}%", f"{100 * s.error_rate_out:.1f}%"]
        numbers += [f"{s.support.p_value:.2g}", s.id]
    text = assert_fits(c, numbers)
    assert "…" not in text  # names fold onto more lines, never cut
    assert LONG[:10] in text
    for name in MARKUP_NAMES[:3]:
        assert name in text  # printed as typed


def test_caption_table(synthetic_run):
    long_caps = {0: [f"a photo of a {LONG} on a red background with many more words " * 2]}
    run = load_run(
        synthetic_run(
            n_classes=4, class_names=[LONG, *MARKUP_NAMES[:3]], caption_overrides=long_caps
        )
    )
    c = console80()
    c.print(caption_table(run.slices))
    numbers = []
    for s in run.slices:
        numbers.append(f"{100 * s.error_rate_in:.0f}%")
        for cap in s.captions.failure[:3]:
            numbers.append(f"{cap.score:+.3f}")
        for chk in s.caption_checks:
            numbers.append(
                f"{100 * chk.acc_at_decision:.0f}%@{chk.k_decision} vs {100 * chk.class_acc:.0f}%"
            )
    text = assert_fits(c, numbers)
    for name in MARKUP_NAMES[:3]:
        assert name in text


def test_evaluation_table(synthetic_run):
    run = load_run(synthetic_run(evaluation=True, class_names=[LONG, *MARKUP_NAMES[:3]]))
    result = run.evaluation
    row = result.plants[0].replace(top_captions=(f"a photo of a {LONG} on a red background",))
    result = result.replace(plants=(row, *result.plants[1:]))
    c = console80()
    print_evaluation(result, console=c)
    numbers = []
    for r in result.plants:
        numbers += [f"{r.n_members}/{r.n_class}", f"{r.average_precision:.2f}"]
        numbers += [f"{r.acc_in_slice:.2f}/{r.acc_overall:.2f}"]
    assert_fits(c, numbers)


@pytest.mark.parametrize("planted", [False, True])
def test_retrain_table(planted):
    def m(acc, disc, planted_acc, params):
        return {
            "test_accuracy": acc,
            "mean_discovered_accuracy": disc,
            "mean_planted_accuracy": planted_acc if planted else None,
            "worst_slice_accuracy": disc - 0.1,
            "parameters": params,
        }

    metrics = {
        "status": "ok",
        "methods": {
            "audited": m(0.712, 0.301, 0.25, None),
            "erm": m(0.744, 0.352, 0.31, 12_345),
            "sbl-balanced": m(0.801, 0.529, 0.488, 1_234_567),
            "upweight-balanced": m(0.795, 0.511, 0.47, 12_345),
        },
        "slices": {
            "training": {
                "names": ["a", "b"],
                "source": "discovered",
                "moved_labels": {"3/1": {"confusions": [8], "missing": 140.2, "extra": 152.0}},
            }
        },
        "features": {"source": "model", "dim": 64},
        "annotations": {"source": None, "version": 0, "slices": {}},
        "seconds": {"total": 12.3},
        "out": "runs/a/retrain",
    }
    c = console80()
    print_metrics(metrics, console=c)
    text = assert_fits(c, ["80.1 (+8.9)", "52.9 (+22.8)", "1,234,567", "71.2", "42.9"])
    words = " ".join(text.split())  # the moved-labels note wraps at the width
    assert "slice 3/1 left out as likely noisy labels" in words
    assert "lacks 140 training examples of its class and holds 152 more labelled 8" in words


def test_world_attributes_table(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    demo_cli._print_attributes()
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(map(len, lines)) <= 80


def test_user_strings_are_not_markup(synthetic_run, capsys):
    names = [*MARKUP_NAMES[:3], "plain"]
    run = load_run(synthetic_run(class_names=names, evaluation=True))
    print_summary(run)  # the default (stdout) console
    print_evaluation(run.evaluation)
    out = capsys.readouterr().out
    for name in names:
        assert name in out
    # a console of the caller's own, with markup on, gets Text cells too
    c = console80()
    c.print(caption_table(run.slices))
    print_summary(SimpleNamespace(
        slices=run.slices, classes=run.classes, fit_split=run.fit_split, skipped=[],
        path="runs/[bold]x",
    ), console=c)  # fmt: skip
    text = c.export_text()
    assert "[/bold]ant" in text and ":cat:" in text and "runs/[bold]x" in text
