"""Datasets (ImageFolder, manifests), image batches, audited models, predictions files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from failscope import InputError
from failscope.data import (
    iter_image_batches,
    load_dataset,
    load_dataset_from_spec,
    load_model,
    model_spec,
    model_transform,
    predict,
    read_predictions,
)

# --------------------------------------------------------------------------- datasets


def test_image_folder_with_split_folders(tmp_path, dataset_writer):
    dataset_writer(tmp_path, n_per_class=3, layout="folder", splits=("val", "train"))
    ds = load_dataset(tmp_path)
    assert ds.classes == ["ant", "bee", "cat"]
    assert len(ds) == 18
    assert ds.split_names == ["train", "val"]  # split folders in canonical order
    assert ds.frame["path"].iloc[0] == "train/ant/000.png"
    assert ds.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [0] * 3 + [1] * 3 + [2] * 3
    assert ds.spec()["kind"] == "imagefolder"
    assert load_dataset_from_spec(ds.spec()).frame.equals(ds.frame)


def test_image_folder_without_splits_is_one_val_split(tmp_path, dataset_writer):
    dataset_writer(tmp_path, n_per_class=10, layout="folder", splits=("x",))
    root = tmp_path / "x"
    (root / "ant" / "notes.txt").write_text("ignored")
    ds = load_dataset(root)
    assert len(ds) == 30 and set(ds.splits) == {"val"}
    half = load_dataset(root, split_by="random:0.3", seed=1)
    counts = half.frame.groupby(["label", "split"]).size().unstack()
    assert counts["val"].tolist() == [3, 3, 3] and counts["train"].tolist() == [7, 7, 7]
    again = load_dataset(root, split_by="random:0.3", seed=1)
    assert (again.splits == half.splits).all()
    with pytest.raises(InputError, match="not understood"):
        load_dataset(root, split_by="halves")


def test_image_folder_mixing_splits_and_classes_is_refused(tmp_path, dataset_writer):
    dataset_writer(tmp_path, n_per_class=1, layout="folder", splits=("train",))
    (tmp_path / "cat").mkdir()
    with pytest.raises(InputError, match=r"mixes split folders \[train\] and class folders"):
        load_dataset(tmp_path)


def test_manifest_metadata_labels_and_splits(image_dataset):
    ds = load_dataset(image_dataset.manifest)
    assert len(ds) == len(image_dataset.rows) == 144
    assert ds.classes == ["ant", "bee", "cat"]
    assert ds.metadata_columns == ["planted", "brightness"]
    assert ds.frame["planted"].tolist() == [r["planted"] for r in image_dataset.rows]
    assert ds.split_names == ["train", "val"]
    assert ds.abspaths[0] == str(image_dataset.root / image_dataset.rows[0]["path"])
    with pytest.raises(InputError, match="already has a 'split' column"):
        load_dataset(image_dataset.manifest, split_by="random:0.5")


def test_manifest_classes_file_sets_order_and_rejects_unknown_labels(image_dataset, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\nbee\nant\n")
    ds = load_dataset(image_dataset.manifest, classes=classes)
    assert ds.classes == ["cat", "bee", "ant"]
    assert ds.labels[0] == 2  # first row is an ant
    frame = pd.read_csv(image_dataset.manifest)
    frame.loc[12, "label"] = "dog"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(InputError) as err:
        load_dataset(bad, classes=classes)
    msg = str(err.value)
    assert "'dog'" in msg and "row 12" in msg and "[cat, bee, ant]" in msg and "\n" not in msg


def test_manifest_integer_labels_parquet_and_reserved_columns(image_dataset, tmp_path):
    frame = pd.read_csv(image_dataset.manifest)
    frame["label"] = frame["label"].map({"ant": 0, "bee": 1, "cat": 4})
    frame["id"] = np.arange(len(frame)) + 1000
    frame["path"] = [str(image_dataset.root / p) for p in frame["path"]]  # absolute paths
    pq = tmp_path / "m.parquet"
    frame.to_parquet(pq)
    ds = load_dataset(pq)
    assert ds.classes == ["0", "1", "2", "3", "4"] and ds.labels_are_indices
    assert "meta_id" in ds.metadata_columns and "id" not in ds.metadata_columns
    assert ds.abspaths[5] == frame["path"][5]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="path"), "has no 'path' column"),
        (lambda f: f.drop(columns="label"), "has no 'label' column"),
        (lambda f: f.assign(split=[None] + ["val"] * (len(f) - 1)), "empty 'split' at row 0"),
        (lambda f: f.assign(label=[1.5] * len(f)), "holds non-integer numbers"),
    ],
)
def test_manifest_errors_are_one_line(image_dataset, tmp_path, change, message):
    bad = tmp_path / "bad.csv"
    change(pd.read_csv(image_dataset.manifest)).to_csv(bad, index=False)
    with pytest.raises(InputError, match=message) as err:
        load_dataset(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_missing_data_and_unknown_fit_format(tmp_path):
    with pytest.raises(InputError, match="data not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputError, match="neither a folder"):
        load_dataset(tmp_path / "x.txt")


# --------------------------------------------------------------------------- image batches


def _to_tensor(img):
    import torch

    return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255.0


def test_bad_images_are_skipped_and_the_batch_goes_on(image_dataset):
    (image_dataset.root / image_dataset.rows[1]["path"]).unlink()
    (image_dataset.root / image_dataset.rows[2]["path"]).write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    ds = load_dataset(image_dataset.manifest)
    batches = list(iter_image_batches(ds, _to_tensor, ids=np.arange(8), batch_size=4))
    assert [b.ids.tolist() for b in batches] == [[0, 3], [4, 5, 6, 7]]
    assert batches[0].pixels.shape == (2, 3, 32, 32)
    reasons = dict(batches[0].skipped)
    assert reasons[1] == "missing file"
    assert reasons[2].startswith("unreadable image (UnidentifiedImageError")


def test_workers_keep_order_and_results(image_dataset):
    ds = load_dataset(image_dataset.manifest)
    ids = np.arange(0, 40, 3)
    one = list(iter_image_batches(ds, _to_tensor, ids=ids, batch_size=5, num_workers=0))
    two = list(iter_image_batches(ds, _to_tensor, ids=ids, batch_size=5, num_workers=2))
    assert [b.ids.tolist() for b in one] == [b.ids.tolist() for b in two]
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a.pixels.numpy(), b.pixels.numpy())


# --------------------------------------------------------------------------- models


def test_model_spec_kinds_and_defaults(channel_classifier_ts, tmp_path):
    ts = model_spec(str(channel_classifier_ts), num_classes=3)
    assert ts["kind"] == "torchscript" and ts["image_size"] is None and ts["mean"] is None
    ck = tmp_path / "ck.pt"
    ck.write_bytes(b"x")
    tv = model_spec("torchvision:resnet18", num_classes=3, checkpoint=ck)
    assert tv["kind"] == "torchvision" and tv["image_size"] == 224
    assert tv["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert model_spec("pkg.mod:make", num_classes=3)["kind"] == "callable"
    with pytest.raises(InputError, match="needs --checkpoint"):
        model_spec("torchvision:resnet18", num_classes=3)
    with pytest.raises(InputError, match="is not a file"):
        model_spec("missing.pt", num_classes=3)
    with pytest.raises(InputError, match="both mean and std"):
        model_spec("pkg.mod:make", num_classes=3, mean=[0.5, 0.5, 0.5])


def test_torchscript_predictions_match_the_planted_errors(image_dataset, channel_classifier_ts):
    ds = load_dataset(image_dataset.manifest)
    spec = model_spec(str(channel_classifier_ts), num_classes=3)
    seen = []
    preds = predict(
        ds,
        load_model(spec),
        model_transform(spec),
        batch_size=50,
        progress=lambda d, t: seen.append((d, t)),
    )
    planted = np.array([r["planted"] for r in image_dataset.rows])
    assert ((preds.pred != ds.labels) == planted).all()
    assert preds.n_outputs == 3 and preds.skipped == []
    assert ((preds.confidence > 1 / 3) & (preds.confidence <= 1)).all()
    assert seen == [(50, 144), (100, 144), (144, 144)]


def _save_resnet(path, seed=0):
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=3)
    torch.save(model.state_dict(), path)
    return model


def test_torchvision_state_dict_and_pickle_refusal(tmp_path):
    import torch

    model = _save_resnet(tmp_path / "sd.pt")
    spec = model_spec("torchvision:resnet18", num_classes=3, checkpoint=tmp_path / "sd.pt")
    loaded = load_model(spec)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded(x), model.eval()(x))
    torch.save({"model": model, "epoch": 3}, tmp_path / "pickled.pt")  # needs pickle
    spec = model_spec("torchvision:resnet18", num_classes=3, checkpoint=tmp_path / "pickled.pt")
    with pytest.raises(InputError, match=r"needs pickle.*--trust-checkpoint") as err:
        load_model(spec)
    assert "pickled.pt" in str(err.value)
    trusted = load_model(spec, trust_checkpoint=True)
    assert torch.allclose(trusted(x), model(x))
    spec4 = model_spec("torchvision:resnet18", num_classes=4, checkpoint=tmp_path / "sd.pt")
    with pytest.raises(InputError, match="does not fit the model"):
        load_model(spec4)


def test_callable_model_with_checkpoint(tmp_path, monkeypatch):
    import torch

    (tmp_path / "my_factory_mod.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(5)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))\n"
    )
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(9)
    ref = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    spec = model_spec("my_factory_mod:make", num_classes=3, checkpoint=tmp_path / "w.pt")
    model = load_model(spec)
    x = torch.rand(4, 3, 2, 2)
    assert torch.allclose(model(x), ref(x))
    with pytest.raises(InputError, match="has no callable 'nope'"):
        load_model(model_spec("my_factory_mod:nope", num_classes=3))
    with pytest.raises(InputError, match="cannot import module 'no_such_mod_xyz'"):
        load_model(model_spec("no_such_mod_xyz:make", num_classes=3))


# --------------------------------------------------------------------------- predictions files


def test_predictions_files(image_dataset, tmp_path):
    ds = load_dataset(image_dataset.manifest)
    n = len(ds)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=n).astype(np.float32)
    np.save(tmp_path / "p.npy", probs)
    p = read_predictions(tmp_path / "p.npy", ds)
    assert (p.pred == probs.argmax(1)).all() and np.allclose(p.confidence, probs.max(1))
    np.save(tmp_path / "l.npy", probs.argmax(1))
    p = read_predictions(tmp_path / "l.npy", ds)
    assert (p.pred == probs.argmax(1)).all() and np.isnan(p.confidence).all()
    # csv keyed by path, shuffled, class names as predictions, prob columns by name
    frame = pd.DataFrame(
        {
            "path": ds.frame["path"],
            "pred": [ds.classes[k] for k in probs.argmax(1)],
            **{f"prob_{c}": probs[:, i] for i, c in enumerate(ds.classes)},
        }
    ).sample(frac=1.0, random_state=0)
    frame.to_csv(tmp_path / "p.csv", index=False)
    p = read_predictions(tmp_path / "p.csv", ds)
    assert (p.pred == probs.argmax(1)).all()
    assert np.allclose(p.confidence, probs.max(1), atol=1e-6)
    frame.drop(columns="pred").to_parquet(tmp_path / "p.parquet")
    assert (read_predictions(tmp_path / "p.parquet", ds).pred == probs.argmax(1)).all()


def test_predictions_file_errors(image_dataset, tmp_path):
    ds = load_dataset(image_dataset.manifest)
    np.save(tmp_path / "short.npy", np.zeros(100, dtype=np.int64))
    with pytest.raises(InputError, match="has 100 rows but the dataset has 144 examples"):
        read_predictions(tmp_path / "short.npy", ds)
    pd.DataFrame({"pred": ["ant"] * 143 + ["dog"]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(InputError, match="pred 'dog' at row 143 is not in the classes"):
        read_predictions(tmp_path / "p.csv", ds)
    pd.DataFrame({"x": [1] * 144}).to_csv(tmp_path / "q.csv", index=False)
    with pytest.raises(InputError, match="neither a 'pred' column"):
        read_predictions(tmp_path / "q.csv", ds)
    ids = pd.DataFrame({"id": np.arange(1, 145), "pred": 0})
    ids.to_csv(tmp_path / "k.csv", index=False)
    with pytest.raises(InputError, match="no row for id 0"):
        read_predictions(tmp_path / "k.csv", ds)


def test_classes_file_json(tmp_path):
    from failscope.data import read_classes_file

    (tmp_path / "c.json").write_text(json.dumps(["b", "a"]))
    assert read_classes_file(tmp_path / "c.json") == ["b", "a"]
    (tmp_path / "d.txt").write_text("a\nb\na\n")
    with pytest.raises(InputError, match="lists class 'a' twice"):
        read_classes_file(tmp_path / "d.txt")


def test_shipped_example_inputs_parse():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "data" / "examples"
    ds = load_dataset(folder / "manifest.csv", classes=folder / "classes.txt")
    assert ds.classes == ["bird", "cat", "dog"] and ds.metadata_columns == ["site", "camera"]
    assert ds.split_names == ["train", "val", "test"]
    assert ds.abspaths[4] == "/mnt/archive/extra/bird_17.png"
    by_label = read_predictions(folder / "predictions_labels.csv", ds)
    by_prob = read_predictions(folder / "predictions_probs.csv", ds)
    assert by_label.pred.tolist() == by_prob.pred.tolist() == [1, 2, 2, 2, 0]
    assert by_prob.confidence.tolist() == pytest.approx([0.9, 0.6, 0.95, 0.8, 0.7])
    ints = load_dataset(folder / "manifest_int_labels.csv")
    assert ints.classes == ["0", "1", "2"] and ints.labels.tolist() == [0, 2, 1]


def test_manifest_label_text_rules(tmp_path):
    def labels_of(values, classes=None):
        pd.DataFrame({"path": [f"{i}.png" for i in range(len(values))], "label": values}).to_csv(
            tmp_path / "m.csv", index=False
        )
        ds = load_dataset(tmp_path / "m.csv", classes=classes)
        return ds.classes, ds.labels.tolist()

    assert labels_of(["2", "0", "1"]) == (["0", "1", "2"], [2, 0, 1])  # indices
    assert labels_of(["007", "010"]) == (["007", "010"], [0, 1])  # names (leading zeros)
    assert labels_of(["10", "9"], classes=["9", "10"]) == (["9", "10"], [1, 0])  # by name
    assert labels_of(["1", "0"], classes=["b", "a"]) == (["b", "a"], [1, 0])  # by index


# --------------------------------------------------------------------------- pixels


def _one_image(tmp_path, name, save):
    """A one-row manifest dataset in a fresh folder; ``save(path)`` writes its image."""
    folder = tmp_path / name.replace(".", "_")
    folder.mkdir()
    save(folder / name)
    pd.DataFrame({"path": [name], "label": ["a"]}).to_csv(folder / "m.csv", index=False)
    return load_dataset(folder / "m.csv")


def _pixels(ds):
    """The image as the models see it: uint8 (H, W, 3), or the skip reason."""
    (batch,) = iter_image_batches(ds, _to_tensor)
    if batch.pixels is None:
        return batch.skipped[0][1]
    return np.rint(batch.pixels[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _mode(ds):
    from PIL import Image

    with Image.open(ds.abspaths[0]) as im:
        return im.mode


def test_16_bit_greyscale_png_is_scaled_not_saturated(tmp_path):
    from PIL import Image

    values = np.array([[0, 257, 1000], [32896, 60000, 65535]], dtype=np.uint16)
    ds = _one_image(tmp_path, "g16.png", lambda p: Image.fromarray(values).save(p))
    assert _mode(ds) in ("I;16", "I")  # a real 16-bit PNG, read back as such
    px = _pixels(ds)
    expected = np.rint(values / 257.0).astype(np.uint8)  # 0, 1, 4 / 128, 233, 255
    assert px.shape == (2, 3, 3)
    assert (px == expected[:, :, None]).all(), px[:, :, 0]


def test_32_bit_integer_and_float_images(tmp_path):
    from PIL import Image

    ints = np.array([[0, 514, 65535, 70000]], dtype=np.int32)
    ds = _one_image(tmp_path, "i32.tif", lambda p: Image.fromarray(ints, mode="I").save(p))
    assert _mode(ds) == "I"
    assert _pixels(ds)[0, :, 0].tolist() == [0, 2, 255, 255]  # 0..65535 -> 0..255, clipped
    floats = np.full((4, 4), 0.5, np.float32)
    ds = _one_image(tmp_path, "f32.tif", lambda p: Image.fromarray(floats).save(p))
    assert _mode(ds) == "F"
    assert "mode F" in _pixels(ds)  # skipped: a float image has no known range


def test_transparency_is_composited_on_white(tmp_path):
    from PIL import Image

    hidden = (12, 200, 40)  # the colour under alpha 0: must never reach the model

    def palette(path):
        im = Image.new("P", (4, 2))
        im.putpalette([*hidden, 255, 0, 0] + [0, 0, 0] * 254)
        im.putdata([0, 0, 1, 1] * 2)
        im.save(path, transparency=0)  # a tRNS chunk

    ds = _one_image(tmp_path, "p.png", palette)
    assert _mode(ds) == "P"
    px = _pixels(ds)
    assert px[0, :2].tolist() == [[255, 255, 255]] * 2 and px[0, 2:].tolist() == [[255, 0, 0]] * 2

    la = np.zeros((2, 2, 2), np.uint8)
    la[..., 0], la[0, :, 1], la[1, :, 1] = 100, 0, 255
    px = _pixels(_one_image(tmp_path, "la.png", lambda p: Image.fromarray(la, "LA").save(p)))
    assert px[0].tolist() == [[255, 255, 255]] * 2 and px[1].tolist() == [[100, 100, 100]] * 2

    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (*hidden, 0)
    rgba[0, 1] = (255, 0, 0, 128)
    px = _pixels(_one_image(tmp_path, "rgba.png", lambda p: Image.fromarray(rgba).save(p)))
    assert px[0, 0].tolist() == [255, 255, 255]
    assert px[0, 1, 0] == 255 and abs(int(px[0, 1, 1]) - 127) <= 1 and px[0, 1, 1] == px[0, 1, 2]


def test_greyscale_and_cmyk_convert_to_rgb(tmp_path):
    from PIL import Image

    grey = _one_image(tmp_path, "l.png", lambda p: Image.new("L", (3, 3), 77).save(p))
    assert _mode(grey) == "L" and (_pixels(grey) == 77).all()

    def cmyk(path):
        Image.new("RGB", (16, 16), (200, 60, 60)).convert("CMYK").save(path, quality=95)

    ds = _one_image(tmp_path, "cmyk.jpg", cmyk)
    assert _mode(ds) == "CMYK"
    px = _pixels(ds).reshape(-1, 3).astype(int)
    assert np.abs(px - [200, 60, 60]).max() <= 8, px[0]


def test_decompression_bombs_are_skipped_with_a_reason(image_dataset, monkeypatch):
    from PIL import Image

    ds = load_dataset(image_dataset.manifest)
    for limit in (1000, 400):  # 32x32 = 1024 pixels: Pillow warns above 1000, refuses above 800
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        (batch,) = iter_image_batches(ds, _to_tensor, ids=np.arange(3))
        assert batch.pixels is None and [i for i, _ in batch.skipped] == [0, 1, 2]
        assert all(
            r.startswith("image too large: Image size (1024 pixels)") for _, r in batch.skipped
        )


# --------------------------------------------------------------------------- symbolic links


def test_symlink_loops_are_not_followed_and_each_file_counts_once(tmp_path, dataset_writer, caplog):
    root = tmp_path / "tree"
    dataset_writer(root, n_per_class=40, splits=("x",), layout="folder")
    root = root / "x"
    (root / "ant" / "loop").symlink_to(root / "ant")  # a folder linked into itself
    (root / "bee" / "up").symlink_to(root)  # back to the dataset root
    (root / "cat" / "sub").mkdir()
    (root / "cat" / "sub" / "back").symlink_to(root / "cat")  # to an ancestor
    (root / "cat" / "next").symlink_to(root / "bee")  # to another class folder
    ds = load_dataset(root)
    assert len(ds) == 120
    assert ds.frame.groupby("label").size().tolist() == [40, 40, 40]
    assert ds.frame["path"].is_unique
    assert "not following" in caplog.text

    extra = tmp_path / "extra"  # outside the tree, reached twice from one class
    extra.mkdir()
    for k in range(5):
        (extra / f"e{k}.png").write_bytes((root / "ant" / "000.png").read_bytes())
    (root / "ant" / "d1").symlink_to(extra)
    (root / "ant" / "d2").symlink_to(extra)
    (root / "ant" / "again.png").symlink_to(root / "ant" / "003.png")
    ds = load_dataset(root)
    assert len(ds) == 125 and ds.frame.groupby("label").size().tolist() == [45, 40, 40]
    assert "ant/d1/e0.png" in ds.frame["path"].tolist()
    assert "ant/again.png" not in ds.frame["path"].tolist()  # a second path to 003.png


def test_a_split_folder_linked_to_another_split_is_refused(tmp_path, dataset_writer):
    root = tmp_path / "tree"
    dataset_writer(root, n_per_class=3, splits=("train",), layout="folder")
    (root / "val").symlink_to(root / "train")  # every file would be in both splits
    with pytest.raises(InputError, match=r"val/ant/000.png and train/ant/000.png are the same"):
        load_dataset(root)


# --------------------------------------------------------------------------- predictions rules


def test_logits_are_detected_and_softmaxed(image_dataset, tmp_path, caplog):
    ds = load_dataset(image_dataset.manifest)
    logits = np.random.default_rng(0).normal(0, 4, size=(len(ds), 3)).astype(np.float32)
    np.save(tmp_path / "l.npy", logits)
    p = read_predictions(tmp_path / "l.npy", ds)
    soft = np.exp(logits - logits.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    assert (p.pred == logits.argmax(1)).all()
    assert np.allclose(p.confidence, soft.max(1), atol=1e-6)
    assert p.confidence.min() > 1 / 3 - 1e-6 and p.confidence.max() <= 1
    assert "holds logits, not probabilities" in caplog.text
    # a pred column with logit prob_* columns: confidence = softmax of the given pred
    pred = (logits.argmax(1) + 1) % 3
    frame = pd.DataFrame(
        {"pred": pred, **{f"prob_{c}": logits[:, i] for i, c in enumerate(ds.classes)}}
    )
    frame.to_csv(tmp_path / "l.csv", index=False)
    p = read_predictions(tmp_path / "l.csv", ds)
    assert np.allclose(p.confidence, soft[np.arange(len(ds)), pred], atol=1e-6)


def test_probability_columns_are_matched_by_name_or_by_position(image_dataset, tmp_path, caplog):
    import logging

    ds = load_dataset(image_dataset.manifest)
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=len(ds))
    named = pd.DataFrame({f"prob_{c}": probs[:, i] for i, c in enumerate(ds.classes)})
    named[["prob_cat", "prob_ant", "prob_bee"]].to_csv(tmp_path / "n.csv", index=False)
    p = read_predictions(tmp_path / "n.csv", ds)  # file order differs from class order
    assert (p.pred == probs.argmax(1)).all() and np.allclose(p.confidence, probs.max(1))
    pos = pd.DataFrame({f"prob_{k}": probs[:, k] for k in (2, 0, 1)})
    pos.to_csv(tmp_path / "k.csv", index=False)
    with caplog.at_level(logging.INFO, logger="failscope"):
        p = read_predictions(tmp_path / "k.csv", ds)
    assert (p.pred == probs.argmax(1)).all()
    assert "matched to the classes by position" in caplog.text
    rounded = np.round(probs, 2)  # written with 2 decimals: rows sum to 0.99 .. 1.01
    np.save(tmp_path / "r.npy", rounded)
    p = read_predictions(tmp_path / "r.npy", ds)
    assert np.allclose(p.confidence, rounded.max(1))
