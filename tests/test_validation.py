"""The input checks of failscope._validation: capped one-line messages, seeds, .npy files."""

from __future__ import annotations

import re

import numpy as np
import pytest

from failscope._validation import (
    MAX_MESSAGE_CHARS,
    MAX_SEED,
    InputError,
    check_int,
    check_seed,
    fail,
    open_npy,
)


def test_every_message_is_one_capped_line():
    huge = "x" * 10**6
    msg = str(fail(f"class {huge!r}\nis not in the classes;\tpass --classes FILE"))
    assert len(msg) == MAX_MESSAGE_CHARS == 500 and "\n" not in msg and "\t" not in msg
    assert msg.startswith("class 'xxx") and msg.endswith(
        "is not in the classes; pass --classes FILE"
    )
    assert " … " in msg  # the middle, not the advice at the end, is cut
    short = "seed=3 must be >= 5"
    assert str(fail(short)) == short
    with pytest.raises(TypeError) as err:  # TypeErrors share the cap
        check_int(huge, name="n")
    assert len(str(err.value)) == MAX_MESSAGE_CHARS


def test_seeds_are_64_bit():
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == 2**64 - 1
    for bad in (2**64, -1, 10**30):
        with pytest.raises(InputError, match=r"must be an integer from 0 to 2\*\*64 - 1"):
            check_seed(bad)
    with pytest.raises(TypeError, match=r"seed must be an integer, got 1\.5"):
        check_seed(1.5)


def test_open_npy_refuses_empty_truncated_pickled_and_0d(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(12, dtype=np.float32).reshape(4, 3))
    assert open_npy(good, what="scores file").shape == (4, 3)
    cases = {
        "empty.npy": (b"", "is empty (0 bytes)"),
        "cut.npy": (good.read_bytes()[:140], "cannot be read as a .npy array"),
        "header.npy": (good.read_bytes()[:40], "cannot be read as a .npy array"),
        "text.npy": (b"path,label\na.png,cat\n", "cannot be read as a .npy array"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=re.escape(message)) as err:
            open_npy(tmp_path / name, what="scores file")
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="Python objects"):
        open_npy(tmp_path / "obj.npy", what="scores file")
    np.save(tmp_path / "d0.npy", np.float32(2.0))
    with pytest.raises(InputError, match="a single value"):
        open_npy(tmp_path / "d0.npy", what="scores file")
