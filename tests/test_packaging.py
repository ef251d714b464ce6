"""The wheel: LICENSE, py.typed, package data, a PyPI description, no unused dependency.

The wheel is really built (``pip wheel --no-deps --no-build-isolation``, about 6 s):
inspecting pyproject.toml alone would not catch a file that setuptools leaves out.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Import name of each runtime dependency whose name differs from it.
IMPORT_NAMES = {"open_clip_torch": "open_clip", "scikit-learn": "sklearn", "faiss-cpu": "faiss",
                "pillow": "PIL", "pyyaml": "yaml"}  # fmt: skip
#: Dependencies used without an import of their own.
INDIRECT = {"pyarrow": "pandas' parquet engine (examples.parquet)"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("failscope-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_carries_license_and_py_typed(wheel):
    names = wheel.namelist()
    assert "failscope/py.typed" in names
    (lic,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(lic).decode().startswith("MIT License")
    for data in ("failscope/report/page.html", "failscope/report/report.js",
                 "failscope/caption/vocab/colors.yaml"):  # fmt: skip
        assert data in names


def metadata(wheel):
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(meta).decode())


def test_long_description_starts_with_pip_install_and_demo(wheel):
    msg = metadata(wheel)
    assert msg["License-Expression"] == "MIT"
    body = msg.get_payload()
    commands = re.findall(r"^(?:pip|failscope|make)\b.*$", body, flags=re.M)
    assert commands[:2] == [
        "pip install failscope",
        "failscope demo            # the whole pipeline on a built-in world, offline, a few "
        "minutes on a CPU",
    ]
    assert "make" not in body.split()
    assert "--index-url https://download.pytorch.org/whl/cpu" in body
    requires = " ".join(msg.get_all("Requires-Dist"))
    assert "tqdm" not in requires


def test_every_runtime_dependency_is_used(wheel):
    deps = [d for d in metadata(wheel).get_all("Requires-Dist") if "extra ==" not in d]
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "failscope").rglob("*.py"))
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0)
        if name in INDIRECT:
            continue
        module = IMPORT_NAMES.get(name, name)
        assert re.search(rf"^\s*(import|from) {re.escape(module)}\b", source, flags=re.M), name
