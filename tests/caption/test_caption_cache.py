import numpy as np

from failscope.caption.cache import TextEmbeddingCache, cache_file_name


def test_second_call_encodes_nothing(tmp_path, fake_encoder):
    texts = ["a photo of a red cat", "a photo of a cat", "a photo of a red cat"]
    cache = TextEmbeddingCache(tmp_path / "text", fake_encoder.identity)
    first = cache.embed(texts, fake_encoder)
    assert first.shape == (3, fake_encoder.d)
    assert fake_encoder.n_encoded == 2 and cache.n_encoded_ == 2
    np.testing.assert_array_equal(first[0], first[2])

    # a fresh cache object on the same folder reads the file: nothing is encoded
    again = TextEmbeddingCache(tmp_path / "text", fake_encoder.identity)
    second = again.embed(list(reversed(texts)), fake_encoder)
    assert fake_encoder.n_encoded == 2 and fake_encoder.calls == 1
    assert again.n_encoded_ == 0 and again.n_cached_ == 2
    np.testing.assert_array_equal(second, first[::-1])

    # only the new caption is encoded, and the file grows
    third = again.embed(["a photo of a blue cat", "a photo of a cat"], fake_encoder)
    assert fake_encoder.n_encoded == 3 and again.n_encoded_ == 1
    np.testing.assert_array_equal(third[1], first[1])
    assert len(TextEmbeddingCache(tmp_path / "text", fake_encoder.identity)) == 3


def test_cache_is_per_identity(tmp_path, fake_encoder):
    a = TextEmbeddingCache(tmp_path, "model/a:1")
    b = TextEmbeddingCache(tmp_path, "model/b:1")
    assert a.path != b.path and "/" not in a.path.name
    a.embed(["x"], fake_encoder)
    b.embed(["x"], fake_encoder)
    assert fake_encoder.n_encoded == 2
    assert cache_file_name("model/a:1") == cache_file_name("model/a:1")
    assert cache_file_name("a_b") != cache_file_name("a/b")


def test_corrupt_cache_is_ignored(tmp_path, fake_encoder):
    cache = TextEmbeddingCache(tmp_path, fake_encoder.identity)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.path.write_bytes(b"not a zip file")
    out = cache.embed(["hello"], fake_encoder)
    assert out.shape == (1, fake_encoder.d) and fake_encoder.n_encoded == 1
    assert len(TextEmbeddingCache(tmp_path, fake_encoder.identity)) == 1
