"""World generator: determinism, glyph splits, plant grammar and planted rates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from failscope.world import (
    CLASS_NAMES,
    DEFAULT_PLANTS,
    FAMILIES,
    MANIFEST_COLUMNS,
    NOISY_TARGET,
    generate_world,
    glyph_pools,
    list_attributes,
    load_world,
    make_world,
    parse_plant,
    parse_plants,
)

SMALL = {"train": 300, "val": 100, "test": 100}
ALL_PLANTS = ("spurious:7:color=red:0.95", "rare:3:size=small:0.02", "noisy:5:texture=dotted:0.7")


@pytest.fixture(scope="module")
def world():
    return generate_world(ALL_PLANTS, seed=1)


def test_vocabulary_words_unique_and_listed():
    words = [w for values in FAMILIES.values() for w in values]
    assert len(words) == len(set(words))
    assert not set(words) & set(CLASS_NAMES)
    rows = list_attributes()
    assert [r["family"] for r in rows] == list(FAMILIES)
    assert all(tuple(r["values"]) == FAMILIES[r["family"]] for r in rows)


def test_same_seed_same_world_on_disk(tmp_path):
    a = make_world(DEFAULT_PLANTS, seed=3, root=tmp_path / "a", sizes=SMALL)
    b = make_world(DEFAULT_PLANTS, seed=3, root=tmp_path / "b", sizes=SMALL)
    pd.testing.assert_frame_equal(
        pd.read_parquet(a.manifest_path), pd.read_parquet(b.manifest_path)
    )
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.images[split], b.images[split])
    # The PNGs hold exactly the rendered pixels.
    reloaded = load_world(tmp_path / "a")
    np.testing.assert_array_equal(reloaded.split_images("val"), a.images["val"])
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    assert [p["name"] for p in truth["plants"]] == [p.name for p in a.plants]


def test_different_seed_different_world():
    a = generate_world(DEFAULT_PLANTS, seed=3, sizes=SMALL)
    b = generate_world(DEFAULT_PLANTS, seed=4, sizes=SMALL)
    assert not np.array_equal(a.images["train"], b.images["train"])
    assert not a.frame["glyph_id"].equals(b.frame["glyph_id"])


def test_make_world_reloads_cached(tmp_path):
    a = make_world(DEFAULT_PLANTS, seed=0, root=tmp_path, sizes=SMALL)
    stamp = a.manifest_path.stat().st_mtime_ns
    b = make_world(DEFAULT_PLANTS, seed=0, root=tmp_path, sizes=SMALL)
    assert b.manifest_path.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_make_world_rebuilds_a_world_of_another_version(tmp_path, monkeypatch):
    import failscope.world.generate as gen

    old_key = make_world(DEFAULT_PLANTS, seed=0, root=tmp_path, sizes=SMALL).key
    assert json.loads((tmp_path / "world.json").read_text())["version"] == gen.WORLD_VERSION
    monkeypatch.setattr(gen, "WORLD_VERSION", gen.WORLD_VERSION + 1)  # a renderer change
    b = make_world(DEFAULT_PLANTS, seed=0, root=tmp_path, sizes=SMALL)
    assert b.key != old_key
    assert json.loads((tmp_path / "world.json").read_text())["key"] == b.key


def test_manifest_columns(world):
    cols = list(world.frame.columns)
    assert cols[: len(MANIFEST_COLUMNS)] == list(MANIFEST_COLUMNS)
    assert cols[len(MANIFEST_COLUMNS) :] == [f"planted_{p.name}" for p in world.plants]
    assert set(world.frame["split"]) == {"train", "val", "test"}
    for family, values in FAMILIES.items():
        assert set(world.frame[family]) <= set(values)


def test_no_glyph_leakage(world):
    pools = glyph_pools()
    assert not set(pools["train"]) & set(pools["val"])
    assert not set(pools["train"]) & set(pools["test"])
    assert not set(pools["val"]) & set(pools["test"])
    by_split = {s: set(g["glyph_id"]) for s, g in world.frame.groupby("split")}
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    for split, ids in by_split.items():
        assert ids <= set(pools[split])


@pytest.mark.parametrize(
    ("spec", "bad_part"),
    [
        ("oops:7:color=red:0.9", "'oops'"),
        ("rare:12:color=red:0.1", "'12'"),
        ("rare:x:color=red:0.1", "'x'"),
        ("rare:3:colour=red:0.1", "'colour'"),
        ("rare:3:color=pink:0.1", "'pink'"),
        ("rare:3:color=red:1.0", "'1.0'"),
        ("rare:3:color=red:0", "'0'"),
        ("rare:3:color=red:abc", "'abc'"),
        ("rare:3:color=red", "3 ':'-separated fields"),
        ("rare:3:color=red:0.1:9", "5 ':'-separated fields"),
        ("rare:3:color:0.1", "'color'"),
    ],
)
def test_bad_plant_specs(spec, bad_part):
    with pytest.raises(ValueError, match=r"allowed|expected") as info:
        parse_plant(spec)
    message = str(info.value)
    assert bad_part in message
    assert "\n" not in message


def test_plant_parse_and_allowed_values_in_message():
    plant = parse_plant(" rare : 3 : size = small : 0.02 ")
    assert (plant.kind, plant.cls, plant.family, plant.value, plant.rate) == (
        "rare",
        3,
        "size",
        "small",
        0.02,
    )
    assert plant.name == "rare_3_size_small"
    assert parse_plant(plant.spec) == plant
    with pytest.raises(ValueError, match="spurious, rare, noisy"):
        parse_plant("bad:3:size=small:0.1")
    with pytest.raises(ValueError, match="small, medium, large"):
        parse_plant("rare:3:size=tiny:0.1")
    with pytest.raises(ValueError, match="at most one plant per class and family"):
        parse_plants(["rare:3:size=small:0.1", "noisy:3:size=large:0.5"])


def test_truth_entries(world):
    truth = {t["name"]: t for t in world.truth()}
    assert truth["spurious_7_color_red"]["polarity"] == "absent"
    assert truth["rare_3_size_small"]["polarity"] == "present"
    assert truth["noisy_5_texture_dotted"]["noisy_target"] == NOISY_TARGET[5]
    json.dumps(truth)


def test_planted_rates_in_train(world):
    train = world.split_frame("train")
    sevens = train[train["true_label"] == 7]
    assert abs((sevens["color"] == "red").mean() - 0.95) < 0.005
    others = train[train["true_label"] != 7]
    assert abs((others["color"] == "red").mean() - 0.05 / 5) < 0.01
    threes = train[train["true_label"] == 3]
    assert abs((threes["size"] == "small").mean() - 0.02) < 0.005
    dotted5 = train[(train["true_label"] == 5) & (train["texture"] == "dotted")]
    flipped = dotted5["label"] != 5
    assert abs(flipped.mean() - 0.7) < 0.01
    assert set(dotted5.loc[flipped, "label"]) == {NOISY_TARGET[5]}
    # Only the planted slice is noisy, and val/test labels are clean.
    rest = world.frame.drop(dotted5.index)
    assert (rest["label"] == rest["true_label"]).all()
    # Membership columns follow the documented semantics.
    np.testing.assert_array_equal(
        train["planted_spurious_7_color_red"],
        (train["true_label"] == 7) & (train["color"] != "red"),
    )
    np.testing.assert_array_equal(
        train["planted_rare_3_size_small"],
        (train["true_label"] == 3) & (train["size"] == "small"),
    )


def test_val_test_uniform_with_enough_members(world):
    for split in ("val", "test"):
        frame = world.split_frame(split)
        for plant in world.plants:
            assert frame[f"planted_{plant.name}"].sum() >= 25, (split, plant.name)
        for family, values in FAMILIES.items():
            freq = frame[family].value_counts(normalize=True)
            assert set(freq.index) == set(values)
            assert freq.max() - freq.min() < 0.05
        counts = frame["true_label"].value_counts()
        assert counts.max() - counts.min() <= 1


def _render_glyphs(glyph_ids: np.ndarray, size: str, quality: str) -> np.ndarray:
    """White glyphs on plain black, every other attribute fixed; same jitter for any quality."""
    from failscope.world.render import render_scenes

    n = len(glyph_ids)
    attrs = {
        "color": np.full(n, "white", dtype=object),
        "background": np.full(n, "black", dtype=object),
        "texture": np.full(n, "plain", dtype=object),
        "size": np.full(n, size, dtype=object),
        "quality": np.full(n, quality, dtype=object),
    }
    return render_scenes(glyph_ids, attrs, rng=np.random.default_rng(0)).astype(np.float64)


def test_blur_costs_every_size_the_same_legibility():
    # A fixed-pixel blur erases small glyphs and barely touches large ones, which
    # ties every planted "blurry" failure to "small". The glyph's blur scales with
    # its size, so the blurred glyph is as close to its sharp self at every size.
    glyph_ids = glyph_pools()["test"][:60]
    corr = {}
    for size in FAMILIES["size"]:
        sharp = _render_glyphs(glyph_ids, size, "sharp").reshape(len(glyph_ids), -1)
        blurry = _render_glyphs(glyph_ids, size, "blurry").reshape(len(glyph_ids), -1)
        sharp -= sharp.mean(1, keepdims=True)
        blurry -= blurry.mean(1, keepdims=True)
        r = (sharp * blurry).sum(1) / np.sqrt((sharp**2).sum(1) * (blurry**2).sum(1))
        corr[size] = float(r.mean())
    assert all(0.5 < c < 0.97 for c in corr.values()), corr  # blur is visible at every size
    assert max(corr.values()) - min(corr.values()) < 0.02, corr  # fixed 1.1 px blur: 0.036


def test_glyph_boxes_hold_the_digit_and_leave_the_pixels_alone():
    from failscope.world.render import GLYPH_ALPHA, render_scenes, sample_uniform_attributes

    n = 300
    ids = np.resize(glyph_pools()["val"], n)
    attrs = sample_uniform_attributes(n, rng=np.random.default_rng(2))
    images, boxes = render_scenes(ids, attrs, rng=np.random.default_rng(1), return_boxes=True)
    np.testing.assert_array_equal(images, render_scenes(ids, attrs, rng=np.random.default_rng(1)))
    # the same scenes with another digit colour differ only where the glyph is
    recoloured = dict(attrs, color=np.where(attrs["color"] == "red", "green", "red"))
    other = render_scenes(ids, recoloured, rng=np.random.default_rng(1)).astype(float)
    diff = np.abs(other - images).max(axis=3)  # (n, 32, 32)
    inside = np.zeros_like(diff, dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        inside[i, y0:y1, x0:x1] = True
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    # outside the box the digit's opacity is below GLYPH_ALPHA (red vs green: 255 apart)
    assert diff[~inside].max() <= GLYPH_ALPHA * 260
    # the box is tight: each of its edge rows and columns holds ink
    for i in range(0, n, 37):
        x0, y0, x1, y1 = boxes[i]
        ink = diff[i] >= GLYPH_ALPHA * 150  # red vs green: >= 160 apart per channel
        assert ink[y0, x0:x1].any() and ink[y1 - 1, x0:x1].any()
        assert ink[y0:y1, x0].any() and ink[y0:y1, x1 - 1].any()


def test_world_written_without_glyph_boxes_is_rewritten(tmp_path):
    from failscope.world import GLYPH_BOX_COLUMNS

    a = make_world(DEFAULT_PLANTS, seed=0, root=tmp_path, sizes=SMALL)
    assert set(GLYPH_BOX_COLUMNS) <= set(a.frame.columns)
    a.frame.drop(columns=list(GLYPH_BOX_COLUMNS)).to_parquet(a.manifest_path, index=False)
    b = make_world(DEFAULT_PLANTS, seed=0, root=tmp_path, sizes=SMALL)  # same key: rewritten
    assert b.key == a.key
    pd.testing.assert_frame_equal(pd.read_parquet(b.manifest_path), a.frame)
