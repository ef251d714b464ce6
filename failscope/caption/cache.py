"""On-disk cache of CLIP text embeddings, keyed by (CLIP identity, caption text).

One file per text encoder: ``RUN/cache/text/<identity>.npz`` holding ``texts``
(unicode array) and ``embeddings`` (float32, (n, d)), written atomically and
without pickle. Re-ranking with another method, ``top_k`` or vocabulary only
encodes captions the cache has not seen.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["TextEmbeddingCache", "TextEncoder", "cache_file_name"]


class TextEncoder(Protocol):
    """What the cache needs from a CLIP model (``failscope.embed.ClipModel`` has it)."""

    identity: str

    def encode_text(self, texts: list[str], batch_size: int = ...) -> np.ndarray: ...


def cache_file_name(identity: str) -> str:
    """A file-system-safe, collision-free file name for a CLIP identity."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", identity).strip("._")[:80] or "clip"
    digest = hashlib.sha1(identity.encode("utf-8")).hexdigest()[:10]
    return f"{safe}-{digest}.npz"


class TextEmbeddingCache:
    """Text embeddings of one CLIP text encoder, cached in a folder.

    Parameters
    ----------
    directory : path-like
        Folder of cache files, usually ``RUN/cache/text``.
    identity : str
        The CLIP model's stable identity; it names the cache file.

    Attributes
    ----------
    path : Path
        The cache file.
    n_encoded_ : int
        Captions the encoder was asked to embed by the last :meth:`embed` call.
    n_cached_ : int
        Captions of the last call served from the cache.
    """

    def __init__(self, directory: str | os.PathLike[str], identity: str) -> None:
        self.path = Path(directory) / cache_file_name(str(identity))
        self.identity = str(identity)
        self.n_encoded_ = 0
        self.n_cached_ = 0
        self._texts: list[str] | None = None
        self._emb: np.ndarray | None = None
        self._index: dict[str, int] = {}

    def _load(self) -> None:
        if self._texts is not None:
            return
        self._texts, self._emb, self._index = [], None, {}
        if not self.path.is_file():
            return
        try:
            with np.load(self.path, allow_pickle=False) as data:
                texts = [str(t) for t in data["texts"]]
                emb = np.asarray(data["embeddings"], dtype=np.float32)
                identity = str(data["identity"]) if "identity" in data else self.identity
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable text-embedding cache %s (%s)", self.path, exc)
            return
        if identity != self.identity or len(texts) != len(emb):
            logger.warning(
                "ignoring text-embedding cache %s: it belongs to another model", self.path
            )
            return
        self._texts, self._emb = texts, emb
        self._index = {t: i for i, t in enumerate(texts)}

    def __len__(self) -> int:
        self._load()
        return len(self._texts or [])

    def __contains__(self, text: object) -> bool:
        self._load()
        return text in self._index

    def embed(self, texts: list[str], encoder: Any, *, batch_size: int = 256) -> np.ndarray:
        """Return the embeddings of ``texts``, encoding only those not cached.

        Parameters
        ----------
        texts : list of str
        encoder : object with ``encode_text(texts, batch_size=...)``
            Must be the model whose identity this cache holds.
        batch_size : int, default=256

        Returns
        -------
        ndarray of shape (len(texts), d), float32
        """
        self._load()
        assert self._texts is not None
        wanted = list(dict.fromkeys(texts))
        missing = [t for t in wanted if t not in self._index]
        self.n_encoded_ = len(missing)
        self.n_cached_ = len(wanted) - len(missing)
        if missing:
            logger.info("encoding %d captions (%d cached)", len(missing), self.n_cached_)
            new = np.asarray(encoder.encode_text(missing, batch_size=batch_size), dtype=np.float32)
            if new.ndim != 2 or len(new) != len(missing):
                raise ValueError(
                    f"encode_text returned shape {new.shape} for {len(missing)} captions"
                )
            if self._emb is not None and new.shape[1] != self._emb.shape[1]:
                raise ValueError(
                    f"encode_text returned {new.shape[1]}-d embeddings but the cache "
                    f"{self.path} holds {self._emb.shape[1]}-d ones"
                )
            start = len(self._texts)
            self._emb = new if self._emb is None else np.concatenate([self._emb, new])
            self._texts.extend(missing)
            self._index.update({t: start + i for i, t in enumerate(missing)})
            self._save()
        if not texts:
            d = 0 if self._emb is None else self._emb.shape[1]
            return np.zeros((0, d), dtype=np.float32)
        assert self._emb is not None
        return self._emb[[self._index[t] for t in texts]]

    def _save(self) -> None:
        from failscope.run import atomic_write

        assert self._emb is not None and self._texts is not None
        texts = np.array(self._texts, dtype=str)
        emb = self._emb
        identity = np.array(self.identity)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a handle: np.savez would append ".npz" to the name
                np.savez(fh, texts=texts, embeddings=emb, identity=identity)

        atomic_write(self.path, write)
