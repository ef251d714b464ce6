import numpy as np
import pytest

from failscope.caption.check import CURVE_KS, check_captions, decision_k, nearest_correct


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def scene():
    """400 images of one class; the 60 nearest to caption A are all errors, 20% elsewhere."""
    rng = np.random.default_rng(0)
    d = 24
    images = _unit(rng.normal(size=(400, d))).astype(np.float32)
    qa = _unit(rng.normal(size=d)).astype(np.float32)
    qb = _unit(rng.normal(size=d)).astype(np.float32)
    correct = rng.random(400) > 0.2
    near_a = np.argsort(-(images @ qa))[:60]
    correct[near_a] = False
    return images, correct, qa, qb, near_a


def test_errors_near_caption_confirm_it(scene):
    images, correct, qa, qb, _ = scene
    out = check_captions(
        ["caption a", "caption b"], np.stack([qa, qb]), images, correct, split="test"
    )
    a, b = out
    class_acc = correct.mean()
    assert a["class_acc"] == pytest.approx(class_acc)
    assert a["k"] == [25, 50, 100]
    assert a["acc_at_k"][0] == 0.0 and a["acc_at_k"][1] == 0.0  # 60 errors nearest
    assert a["acc_at_k"][2] < class_acc
    assert a["k_decision"] == 50 and a["acc_at_decision"] == 0.0
    assert a["p_value"] < 1e-6
    assert a["confirmed"] is True
    assert a["split"] == "test" and a["n_class"] == 400

    # caption b's neighbours are ordinary images: not confirmed
    assert b["confirmed"] is False
    assert abs(b["acc_at_decision"] - class_acc) < 0.15
    assert b["p_value"] > 0.05 or class_acc - b["acc_at_decision"] < b["margin"]

    # the accuracy curve: K = 5..100, first points 0 for caption a
    assert a["curve"]["k"] == list(CURVE_KS)
    assert a["curve"]["acc"][:12] == [0.0] * 12  # K = 5..60
    assert len(b["curve"]["acc"]) == len(CURVE_KS)


def test_nearest_correct_matches_brute_force(scene):
    images, correct, qa, qb, _near_a = scene
    hits = nearest_correct(images, correct, np.stack([qa, qb]), k=30)
    brute = correct[np.argsort(-(images @ qb))[:30]]
    np.testing.assert_array_equal(hits[1], brute)
    assert not hits[0].any()


def test_small_class_and_no_errors():
    rng = np.random.default_rng(1)
    images = _unit(rng.normal(size=(30, 8)))
    q = _unit(rng.normal(size=(1, 8)))
    correct = np.ones(30, bool)
    (r,) = check_captions(["c"], q, images, correct, split="val", note="no test split")
    assert r["confirmed"] is False and r["class_acc"] == 1.0
    assert r["acc_at_k"] == [1.0, None, None]  # K=50 and 100 exceed the class
    assert r["curve"]["k"] == [5, 10, 15, 20, 25, 30]
    assert r["note"] == "no test split" and r["split"] == "val"
    assert decision_k(30) == 15 and decision_k(500) == 50 and decision_k(6) == 5
    # a tiny class is never confirmed, even if all its images are errors near the caption
    (t,) = check_captions(
        ["c"], q, images[:8], np.zeros(8, bool) | (np.arange(8) > 5), split="test"
    )
    assert t["confirmed"] is False


def test_random_captions_where_errors_cluster_are_not_confirmed():
    """Errors cluster where every caption points (the vocabulary's mean): without the null
    every caption's neighbourhood is harder than the class; with it only a caption that
    beats random captions of the same spread is confirmed."""
    rng = np.random.default_rng(3)
    d = 32
    mean = _unit(rng.normal(size=d))
    images = _unit(rng.normal(size=(400, d)) + 1.2 * mean).astype(np.float32)
    along = (images @ mean) > np.quantile(images @ mean, 0.6)  # the 40% along the mean ...
    correct = ~along | (rng.random(400) < 0.5)  # ... are wrong half the time, the rest never
    sub = _unit(rng.normal(size=d))
    hard = np.argsort(-(images @ _unit(mean + 1.5 * sub)))[:50]
    correct[hard] = False  # and one group, which a specific caption names, always
    vocab = _unit(mean + 0.6 * rng.normal(size=(40, d)) / np.sqrt(d)).astype(np.float32)
    named = _unit(mean + 1.5 * sub)[None].astype(np.float32)
    texts = [f"random {i}" for i in range(len(vocab))] + ["the named group"]
    emb = np.concatenate([vocab, named])
    without = check_captions(texts, emb, images, correct, split="test")
    assert sum(r["confirmed"] for r in without[:-1]) >= 30  # the old check confirms them
    with_null = check_captions(texts, emb, images, correct, split="test", null_text_emb=vocab)
    assert sum(r["confirmed"] for r in with_null[:-1]) <= 4  # about alpha of random ones
    assert with_null[-1]["confirmed"] and with_null[-1]["null_p_value"] < 0.05
