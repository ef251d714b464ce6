"""``failscope demo`` end to end on a tiny world: results on stdout, logs and progress on
stderr; then ``evaluate --json``, ``retrain --json`` and ``check`` on its run."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading

import pytest

pytestmark = pytest.mark.slow

#: The tiny world (train, val, test images): the whole demo in well under a minute.
SIZES = "400,300,300"
BAR = "━"


def demo_cmd(out, cache, *extra):
    return [sys.executable, "-m", "failscope", "demo", "--sizes", SIZES, "--out", str(out),
            "--cache-dir", str(cache), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory, cli_env_module):
    """One demo run with stdout to a file and stderr to a pseudo-terminal."""
    tmp = tmp_path_factory.mktemp("demo")
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with open(tmp / "out.txt", "wb") as out:
        proc = subprocess.run(
            demo_cmd(tmp / "run", tmp / "models"), stdout=out, stderr=slave,
            env=cli_env_module, timeout=600,
        )  # fmt: skip
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return tmp, (tmp / "out.txt").read_text(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def cli_env_module():
    env = dict(os.environ)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([repo, env.get("PYTHONPATH", "")]))  # fmt: skip
    return env


RESULT_MARKS = ("failure slices on split 'val'", "Planted slices vs discovered",
                "Retraining: test accuracy", "run directory:", "report:")  # fmt: skip


def test_stdout_to_a_file_has_results_and_no_bars_or_logs(demo):
    _, out, err = demo
    for mark in RESULT_MARKS:
        assert mark in out
    assert BAR not in out and "INFO" not in out and "embedding" not in out
    # a file gets the 80-column layout; only the summary lines with paths run longer
    unwrapped = ("run written to ", "run directory: ", "report: ", "skipped inputs: ")
    long = [ln for ln in out.splitlines() if len(ln) > 80 and not ln.startswith(unwrapped)]
    assert [ln for ln in long if "training slice(s)" not in ln] == []
    # the progress bars and the log lines went to the terminal on stderr
    assert BAR in err and "embedding" in err and "INFO" in err


def test_stderr_to_devnull_prints_only_results(demo, cli_env_module, tmp_path):
    tmp = demo[0]
    proc = subprocess.run(
        demo_cmd(tmp_path / "run", tmp / "models", "--no-retrain", "--no-report"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cli_env_module,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0
    out = proc.stdout
    assert out.startswith("failure slices on split 'val'")
    assert BAR not in out and "INFO" not in out and "stage " not in out
    assert "Planted slices vs discovered" in out and "run directory:" in out


def test_evaluate_and_retrain_json_on_the_demo_run(demo, cli_env_module):
    tmp, _, _ = demo
    run = tmp / "run"

    def cli(*args):
        cmd = [sys.executable, "-m", "failscope", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, env=cli_env_module,
                              timeout=300)  # fmt: skip

    ev = cli("evaluate", run, "--json")
    assert ev.returncode == 0, ev.stderr
    doc = json.loads(ev.stdout)
    assert doc == json.loads((run / "evaluation.json").read_text())
    assert doc["summary"]["n_plants"] == 2

    rt = cli("retrain", run, "--json", "--method", "erm", "--epochs", "2", "--threads", "1",
             "--out", tmp / "rt")  # fmt: skip
    assert rt.returncode == 0, rt.stderr
    metrics = json.loads(rt.stdout)
    assert metrics["status"] == "ok" and set(metrics["methods"]) >= {"audited", "erm"}
    assert metrics.pop("out") == str(tmp / "rt")
    assert metrics == json.loads((tmp / "rt" / "metrics.json").read_text())

    ok = cli("check", run, "--max-error-rate", "1", "--max-slice-error-rate", "1")
    assert ok.returncode == 0 and ok.stdout.startswith("PASS"), ok.stdout + ok.stderr
    bad = cli("check", run, "--max-slice-error-rate", "0")
    assert bad.returncode == 1 and bad.stdout.startswith("FAIL slice ")
