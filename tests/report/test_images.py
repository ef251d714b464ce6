"""Report thumbnails of hostile or unusual images: bombs are left out, 16-bit is scaled."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from failscope.report._images import thumbnail_uri


def _decode(uri):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


@pytest.mark.parametrize("limit", [1000, 400])  # 1024 pixels: a warning, then an error
def test_a_decompression_bomb_is_left_out_not_a_traceback(tmp_path, monkeypatch, caplog, limit):
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("RGB", (32, 32), (200, 60, 60)).save(path)
    assert thumbnail_uri(path) is not None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    assert thumbnail_uri(path) is None
    assert "bomb.png left out of the report" in caplog.text


def test_a_16_bit_thumbnail_is_scaled_not_white(tmp_path):
    from PIL import Image

    path = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(path)  # mid grey in 16 bits
    thumb = np.asarray(_decode(thumbnail_uri(path, size=8)).convert("L"))
    assert abs(int(thumb.mean()) - 128) <= 2, thumb.mean()
