import numpy as np
import pytest

from failscope import InputError
from failscope.caption.rank import (
    centroid_scores,
    check_rerank,
    classifier_scores,
    failure_centroid,
    select_top,
)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def texts():
    rng = np.random.default_rng(1)
    gap = 2.0 * _unit(rng.normal(size=64))
    emb = _unit(gap + rng.normal(size=(500, 64))).astype(np.float32)
    ref = _unit(gap + rng.normal(size=64)).astype(np.float32)
    scale = rng.uniform(0.3, 3.0, size=64).astype(np.float32)
    return emb, ref, scale


def test_classifier_formula(texts):
    emb, ref, scale = texts
    w = _unit(np.random.default_rng(2).normal(size=64)).astype(np.float32)
    got = classifier_scores(emb, reference=ref, direction=w, scale=scale, chunk=128)
    want = _unit((emb - ref) / scale) @ w
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (500,)
    # a caption identical to the reference scores 0, not NaN
    assert classifier_scores(ref[None], reference=ref, direction=w, scale=scale)[0] == 0.0


def test_classifier_ranks_the_planted_caption_first(texts):
    emb, ref, scale = texts
    target = 123
    # the failure direction equals the caption's change, as the image classifier sees it
    w = _unit((emb[target] - ref) / scale)
    scores = classifier_scores(emb, reference=ref, direction=w, scale=scale)
    assert int(np.argmax(scores)) == target
    assert scores[target] == pytest.approx(1.0, abs=1e-5)
    assert select_top(scores, 3)[0] == target
    # and the opposite direction puts it at the success end
    low = classifier_scores(emb, reference=ref, direction=-w, scale=scale)
    assert select_top(low, 1, largest=False)[0] == target
    assert select_top(low, 1, largest=True)[0] != target


def test_centroid_ranks_the_planted_caption_first(texts):
    emb, _, _ = texts
    rng = np.random.default_rng(3)
    target = 77
    d = emb.shape[1]
    base = _unit(rng.normal(size=(300, d))) * 0.2 + _unit(rng.normal(size=d))
    # the 50 most failure-aligned images are shifted along the caption's text direction
    scores_img = rng.normal(size=300)
    top = np.argsort(-scores_img)[:50]
    images = base.copy()
    images[top] += 0.5 * emb[target]
    v = failure_centroid(images, scores_img, n=50)
    s = centroid_scores(emb, centroid=v)
    assert int(np.argmax(s)) == target
    # the centroid is the mean of the top 50 minus the mean of all
    np.testing.assert_allclose(v, images[top].mean(0) - images.mean(0), atol=1e-5)


def test_failure_centroid_ignores_nan_and_caps_n():
    x = np.eye(4, dtype=np.float32)
    f = np.array([np.nan, 2.0, 1.0, 0.0])
    v = failure_centroid(x, f, n=10)  # n > finite rows: all finite rows, centroid 0
    np.testing.assert_allclose(v, 0.0, atol=1e-7)
    v1 = failure_centroid(x, f, n=1)
    np.testing.assert_allclose(v1, x[1] - x[1:].mean(0), atol=1e-7)
    with pytest.raises(InputError, match="no finite failure score"):
        failure_centroid(x, np.full(4, np.nan))


def test_select_top_order_ties_and_groups():
    s = np.array([0.1, 0.9, 0.9, -0.5, 0.3])
    assert select_top(s, 3).tolist() == [1, 2, 4]  # ties broken by candidate order
    assert select_top(s, 2, largest=False).tolist() == [3, 0]
    assert select_top(s, 10).tolist() == [1, 2, 4, 0, 3]
    groups = [("c", "red"), ("c", "red"), ("c", "red"), ("c", "blue"), ("s", "x")]
    assert select_top(s, 3, groups=groups).tolist() == [1, 4, 3]
    assert select_top(s, 3, largest=False, groups=groups).tolist() == [3, 0, 4]


def test_nan_direction_is_refused(texts):
    emb, ref, scale = texts
    with pytest.raises(InputError, match="NaN"):
        classifier_scores(emb, reference=ref, direction=np.full(64, np.nan), scale=scale)


def test_check_rerank_orders_by_accuracy_near_each_caption():
    rng = np.random.default_rng(4)
    d = 16
    captions = np.eye(d, dtype=np.float32)[:4]
    captions[3] = captions[2]  # a tie: same text direction as caption 2
    # 30 images around each of the first three captions; the model's accuracy there
    groups = np.repeat(np.arange(3), 30)
    images = captions[groups] + 0.05 * rng.normal(size=(90, d)).astype(np.float32)
    p_right = np.array([0.9, 0.1, 0.5])
    correct = rng.random(90) < p_right[groups]
    order, acc = check_rerank([0, 1, 2, 3], captions, images, correct, k=20)
    assert order.tolist() == [1, 2, 3, 0]  # lowest accuracy first; the tie keeps its order
    # mean accuracy over the depths 5, 10, 15, 20 of the nearest images
    for i, a in zip(order, acc, strict=True):
        near = np.argsort(-(images / np.linalg.norm(images, axis=1, keepdims=True)) @ captions[i])
        want = np.mean([correct[near[:j]].mean() for j in (5, 10, 15, 20)])
        assert a == pytest.approx(want)
    assert acc[0] < 0.3 < 0.7 < acc[-1]
    up, up_acc = check_rerank([0, 1, 2, 3], captions, images, correct, k=20, end="success")
    assert up.tolist() == [0, 2, 3, 1] and up_acc[0] == acc[-1]
    # only the given candidates move; a depth beyond the images is capped
    assert check_rerank([2, 1], captions, images[:10], correct[:10], k=50)[0].tolist() == [2, 1]
    with pytest.raises(InputError, match="end"):
        check_rerank([0], captions, images, correct, k=5, end="middle")
