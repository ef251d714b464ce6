"""Image files of the report: file-safe slice ids, thumbnails as base64 data URIs.

Files of a slice under ``RUN/plots/`` are named by :func:`slice_file_id`; the
optional attribution mosaic that another stage may write for a slice lives at
:func:`attribution_mosaic_path` (``plots/mosaic-8-1.png`` for slice ``"8/1"``).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import warnings
from pathlib import Path

from failscope.run import PLOTS_DIR

logger = logging.getLogger(__name__)

__all__ = [
    "attribution_mosaic_path",
    "data_uri",
    "resolve_image",
    "slice_file_id",
    "thumbnail_uri",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")


def slice_file_id(slice_id: str) -> str:
    """A slice id as a file-name part: ``"8/1"`` -> ``"8-1"``.

    Every character but letters, digits, ``_`` and ``.`` becomes ``-`` (slice ids
    are ``"<class index>/<rank>"``, so distinct ids stay distinct).
    """
    return _UNSAFE.sub("-", str(slice_id))


def attribution_mosaic_path(slice_id: str) -> str:
    """Run-relative path of a slice's attribution mosaic, e.g. ``plots/mosaic-8-1.png``.

    The report embeds that PNG beside the slice's image mosaic when it exists; the
    stage that writes it records it with ``Run.add_files``. The report never
    writes or deletes it.
    """
    return f"{PLOTS_DIR}/mosaic-{slice_file_id(slice_id)}.png"


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def resolve_image(path: str, *, roots: list[Path]) -> Path | None:
    """The first existing file for ``path``: as is if absolute, else under each root."""
    p = Path(path)
    if p.is_absolute():
        return p if p.is_file() else None
    for root in roots:
        q = root / p
        if q.is_file():
            return q
    return None


def thumbnail_uri(path: Path | None, *, size: int = 80, quality: int = 80) -> str | None:
    """A JPEG (or PNG, for images with transparency) thumbnail of ``path`` as a data URI.

    Parameters
    ----------
    path : Path or None
        The image file; None or an unreadable file gives None.
    size : int, default 80
        Longest side in pixels after resizing (small images are enlarged to it, with
        nearest-neighbour resampling so pixel art such as digits stays sharp).
    quality : int, default 80
        JPEG quality.

    Returns
    -------
    str or None
        The data URI, or None if the file is missing, not an image Pillow can read, or
        above Pillow's decompression-bomb limit (logged as a warning).
    """
    if path is None:
        return None
    from PIL import Image, UnidentifiedImageError

    from failscope.data.datasets import to_rgb

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                    im = to_rgb(im)  # 16-bit greyscale scaled as the models see it
                im = _fit(im, size)
                buf = io.BytesIO()
                if im.mode in ("RGBA", "LA") or "transparency" in im.info:
                    im.convert("RGBA").save(buf, format="PNG", optimize=True)
                    return data_uri(buf.getvalue(), "image/png")
                im.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
                return data_uri(buf.getvalue(), "image/jpeg")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        logger.warning("image %s left out of the report: %s", os.fspath(path), exc)
        return None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        logger.debug("cannot read image %s: %s", os.fspath(path), exc)
        return None


def _fit(im, size: int):
    from PIL import Image

    w, h = im.size
    if w <= 0 or h <= 0:
        raise ValueError("empty image")
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (w, h):
        return im
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    return im.resize(new, resample)
