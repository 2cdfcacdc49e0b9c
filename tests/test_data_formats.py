"""Every data format --data reads, on small synthetic sets: what is loaded, the classes, the splits, and the
one line each bad input gets. The commands on them (train, eval, predict, serve) are tests/test_data_commands.py."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from bptrain.app import memory
from bptrain.core.errors import DataError
from bptrain.data.loader import DataOptions, load_dataset
from conftest import make_blobs, one_line_error, write_py2_pickle

SIDE = 4  # 4 x 4 images: 16 features


def refused(path, **options) -> str:
    """The one line load_dataset(path, **options) is refused with."""
    return one_line_error(DataError, lambda: load_dataset(path, **options))


def blobs(n: int, n_classes: int, seed: int = 0, first_label: int = 0):
    """uint8 (n, SIDE, SIDE) images and labels first_label.., every class in turn (rows sorted by nothing)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(40, 215, size=(n_classes, SIDE * SIDE))
    y = np.arange(n) % n_classes
    x = np.clip(centres[y] + rng.normal(0, 8, size=(n, SIDE * SIDE)), 0, 255).round().astype(np.uint8)
    return x.reshape(n, SIDE, SIDE), (y + first_label).astype(np.int64)


# ------------------------------------------------------------------ writers
def write_csv(path: Path, x, y=None, header=True, label_name="label", scale=1) -> Path:
    flat = x.reshape(len(x), -1)
    lines = []
    if header:
        lines.append(",".join(([label_name] if y is not None else []) + [f"pixel{i}" for i in range(flat.shape[1])]))
    for i, row in enumerate(flat):
        values = [f"{v / scale:g}" if scale != 1 else str(int(v)) for v in row]
        lines.append(",".join(([str(int(y[i]))] if y is not None else []) + values))
    path.write_text("\n".join(lines) + "\n")
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_set(folder: Path, train, test=None, prefix="", test_part="t10k") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, pair in (("train", train), (test_part, test)):
        if pair is not None:
            (folder / f"{prefix}{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pair[0]), mtime=0))
            (folder / f"{prefix}{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pair[1]), mtime=0))
    return folder


def write_image_folder(root: Path, x, y, names) -> Path:
    from PIL import Image

    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


# ================================================================== CSV
@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("n_classes", [2, 5, 26])
def test_csv_with_and_without_header_any_class_count(tmp_path, header, n_classes):
    x, y = blobs(12 * n_classes, n_classes)
    path = write_csv(tmp_path / "train.csv", x, y, header=header)
    data = load_dataset(path)
    assert data.n_classes == n_classes and data.n_features == 16
    assert data.class_names == tuple(str(k) for k in range(n_classes))
    # no validation part: every sixth row held out (rows sorted by class lose the same share of each class)
    assert data.held_out == len(x) // 6 and len(data.validation.x) == len(x) // 6
    np.testing.assert_array_equal(data.validation.y, y[5::6])
    np.testing.assert_allclose(data.validation.x, x.reshape(len(x), -1)[5::6] / 255, rtol=1e-6)
    # no test part: the test split is all of it (eval scores every row)
    assert data.test_is_all and len(data.test.x) == len(x)
    assert sorted(data.test.y.tolist()) == sorted(y.tolist())
    assert memory.DataShape.of(data).bytes == data.test.x.nbytes + data.test.y.nbytes  # held once
    # the same split every time
    again = load_dataset(path)
    np.testing.assert_array_equal(again.validation.x, data.validation.x)


def test_csv_labels_1_to_26_are_26_classes_mapped_to_0_to_25(tmp_path):
    x, y = blobs(26 * 7, 26, first_label=1)
    data = load_dataset(write_csv(tmp_path / "letters.csv", x, y))
    assert data.n_classes == 26 and data.label_values == tuple(range(1, 27))
    assert data.class_names[0] == "1" and data.class_names[-1] == "26"
    assert data.train.y.min() == 0 and data.train.y.max() == 25
    assert data.metadata()["label_values"] == list(range(1, 27))


def test_csv_named_label_column_and_pixels_0_to_1(tmp_path):
    x, y = blobs(60, 3)
    flat = x.reshape(60, -1) / 255
    lines = [",".join([f"p{i}" for i in range(16)] + ["digit"])]
    lines += [",".join([f"{v:.6f}" for v in row] + [str(label)]) for row, label in zip(flat, y)]
    path = tmp_path / "last.csv"
    path.write_text("\n".join(lines) + "\n")
    data = load_dataset(path, options=DataOptions(label_column="digit"))
    assert data.n_classes == 3 and data.n_features == 16
    np.testing.assert_allclose(data.test.x[0], flat[0], atol=1e-6)  # 0-1 values are used as they are
    assert "no label column 'label'" in refused(path,
                                                       options=DataOptions(label_column="label"))


def test_csv_bad_inputs_one_line_each(tmp_path):
    x, y = blobs(30, 3)
    good = write_csv(tmp_path / "good.csv", x, y).read_text().splitlines()

    def error(lines, name="bad.csv", **options) -> str:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return refused(path, options=DataOptions(**options))

    fractional = good[:4] + ["3.5" + good[4][good[4].index(","):]] + good[5:]
    assert "label column 'label' holds 3.5 on line 5; labels must be integers" in error(fractional)
    worded = good[:3] + ["cat" + good[3][good[3].index(","):]] + good[4:]
    assert "label column 'label' holds 'cat' on line 4; labels must be integers" in error(worded)
    ragged = good[:6] + [good[6] + ",7"] + good[7:]
    assert "line 7 has 18 values, the first line 17" in error(ragged)
    too_bright = good[:2] + [good[2] + "0"] + good[3:]  # a pixel of 10x its value
    assert "expected 0-255 or 0-1" in error(too_bright)
    assert "a CSV of pixel values was expected" in error([""], name="blank.csv")


def test_a_csv_too_big_for_the_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    x, y = blobs(600, 3)
    path = write_csv(tmp_path / "big.csv", x, y)

    def never(*args, **kwargs):
        raise AssertionError("the CSV was read")

    monkeypatch.setattr(np, "loadtxt", never)
    message = refused(path, max_bytes=10_000)
    assert "more than the 10.0 KB of memory available" in message and "rows of 17 values" in message


# ================================================================== npz
def test_keras_npz_has_a_test_part(tmp_path):
    (x, y), (xt, yt) = blobs(60, 4), blobs(20, 4, seed=1)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    data = load_dataset(path)
    assert data.n_classes == 4 and not data.test_is_all and len(data.test.x) == 20
    assert len(data.validation.x) == 10 and len(data.train.x) == 50  # the last sixth of x_train
    np.testing.assert_allclose(data.test.x, xt.reshape(20, -1) / 255, rtol=1e-6)


@pytest.mark.parametrize("missing, expected", [("y_test", "has x_test but no y_test array"),
                                               ("x_train", "has y_train but no x_train array")])
def test_npz_missing_an_array_is_refused(tmp_path, missing, expected):
    (x, y), (xt, yt) = blobs(60, 4), blobs(20, 4, seed=1)
    arrays = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt}
    del arrays[missing]
    path = tmp_path / "k.npz"
    np.savez(path, **arrays)
    message = refused(path)
    assert expected in message and "expected x_train, y_train, x_test, y_test" in message


def test_npz_mismatched_counts_and_object_arrays_are_refused(tmp_path):
    x, y = blobs(60, 4)
    np.savez(tmp_path / "short.npz", x_train=x, y_train=y[:-1])
    assert "x_train holds 60 images but y_train has shape (59,)" in refused(tmp_path / "short.npz")
    np.savez(tmp_path / "objects.npz", x_train=np.array([x], dtype=object), y_train=y)
    assert "without pickle" in refused(tmp_path / "objects.npz")


# ================================================================== image folders
def test_image_folder_classes_are_the_folder_names(tmp_path):
    x, y = blobs(36, 3)
    root = write_image_folder(tmp_path / "shapes", x, y, ["circle", "square", "triangle"])
    data = load_dataset(root)
    assert data.class_names == ("circle", "square", "triangle") and data.image_size == (SIDE, SIDE)
    assert data.test_is_all and data.held_out == 6
    assert sorted(map(tuple, (data.test.x * 255).round().astype(int))) == sorted(map(tuple, x.reshape(36, -1)))
    assert data.metadata() == {"class_names": ["circle", "square", "triangle"], "image_size": [4, 4]}


def test_image_folder_with_train_and_test_folders(tmp_path):
    (x, y), (xt, yt) = blobs(24, 2), blobs(8, 2, seed=3)
    write_image_folder(tmp_path / "set" / "train", x, y, ["cat", "dog"])
    write_image_folder(tmp_path / "set" / "test", xt, yt, ["cat", "dog"])
    data = load_dataset(tmp_path / "set")
    assert len(data.test.x) == 8 and not data.test_is_all and data.class_names == ("cat", "dog")


def test_image_folder_bad_inputs_one_line_each(tmp_path):
    from PIL import Image

    x, y = blobs(12, 2)
    root = write_image_folder(tmp_path / "set", x, y, ["a", "b"])
    (root / "c").mkdir()
    assert "the class 'c' has no images" in refused(root)
    (root / "c").rmdir()
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    message = refused(root)
    assert str(bad) in message and "not a readable image" in message
    bad.unlink()
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(root / "b" / "wide.png")
    message = refused(root)
    assert "wide.png is 5x6 pixels but" in message and "give --resize 4x4" in message
    data = load_dataset(root, options=DataOptions(resize=(4, 4)))  # as the user says: every image to 4x4
    assert len(data.test.x) == 13 and data.n_features == 16
    (root / "b" / "notes.txt").mkdir()
    assert "is not an image file; a class folder holds only images" in refused(root)


# ================================================================== IDX
def test_emnist_images_are_turned_upright_and_its_letters_are_26_classes(tmp_path):
    (x, y), (xt, yt) = blobs(26 * 6, 26, first_label=1), blobs(26, 26, seed=2, first_label=1)
    stored = x.transpose(0, 2, 1)  # EMNIST stores every image transposed
    folder = write_idx_set(tmp_path / "emnist", (stored, y), (xt.transpose(0, 2, 1), yt),
                           prefix="emnist-letters-", test_part="test")
    data = load_dataset(folder)
    assert data.n_classes == 26 and data.label_values == tuple(range(1, 27))
    np.testing.assert_allclose(data.test.x, xt.reshape(26, -1) / 255, rtol=1e-6)  # upright
    # the same files named otherwise are not known to be transposed, unless said
    plain = write_idx_set(tmp_path / "plain", (stored, y), (xt.transpose(0, 2, 1), yt))
    np.testing.assert_allclose(load_dataset(plain).test.x, xt.transpose(0, 2, 1).reshape(26, -1) / 255, rtol=1e-6)
    said = load_dataset(plain, options=DataOptions(transposed=True))
    np.testing.assert_allclose(said.test.x, xt.reshape(26, -1) / 255, rtol=1e-6)


def test_a_folder_of_several_idx_sets_is_named_by_a_file(tmp_path):
    folder = tmp_path / "emnist"
    write_idx_set(folder, blobs(30, 3), prefix="emnist-digits-", test_part="test")
    write_idx_set(folder, blobs(40, 4), prefix="emnist-letters-", test_part="test")
    message = refused(folder)
    assert "several IDX sets (emnist-digits-, emnist-letters-)" in message
    data = load_dataset(folder / "emnist-letters-train-images-idx3-ubyte.gz")
    assert data.n_classes == 4 and data.test_is_all


def test_idx_mismatched_image_and_label_counts(tmp_path):
    x, y = blobs(30, 3)
    folder = write_idx_set(tmp_path / "set", (x, y[:-2]))
    message = refused(folder)
    assert "has 30 images but" in message and "has 28 labels" in message


def test_a_folder_holding_mnist_pkl_gz_loads_it(tmp_path):
    (tmp_path / "data").mkdir()
    write_py2_pickle(tmp_path / "data" / "mnist.pkl.gz", make_blobs(n_train=30, n_validation=9, n_test=9))
    data = load_dataset(tmp_path / "data")
    assert data.held_out == 0 and len(data.train.x) == 30 and len(data.test.x) == 9


def test_a_missing_absolute_path_is_not_said_to_be_relative(tmp_path):
    message = refused(tmp_path / "nothing.csv")
    assert "no data at" in message and "looked relative" not in message
    assert "looked relative to" in refused(Path("no/such/data.csv"))


def test_unknown_content_names_every_format(tmp_path):
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\x00\x01\x02 nothing")
    message = refused(path)
    for kind in ("mnist.pkl.gz", "IDX files", ".csv", "Keras .npz", "one subfolder per class"):
        assert kind in message


# ================================================================== class names
def test_classes_txt_beside_the_data_names_the_classes(tmp_path):
    x, y = blobs(60, 3)
    path = write_csv(tmp_path / "train.csv", x, y)
    (tmp_path / "classes.txt").write_text("shirt\ntrouser\nbag\n")
    assert load_dataset(path).class_names == ("shirt", "trouser", "bag")
    (tmp_path / "classes.txt").write_text("shirt\ntrouser\n")
    assert "names 2 classes but the data has 3" in refused(path)
    (tmp_path / "classes.txt").write_text("shirt\nshirt\nbag\n")
    assert "names the class 'shirt' twice" in refused(path)
    other = tmp_path / "names.txt"
    other.write_text("x\ny\nz\n")
    assert load_dataset(path, options=DataOptions(class_names=other)).class_names == ("x", "y", "z")


def test_a_class_folder_name_that_is_not_printable_is_refused(tmp_path):
    x, y = blobs(12, 2)
    root = write_image_folder(tmp_path / "set", x, y, ["ok", "new\nline"])
    assert "not printable text" in refused(root)


def test_test_labels_the_training_data_lacks_are_refused(tmp_path):
    (x, y), (xt, yt) = blobs(30, 3), blobs(10, 3, seed=1)
    yt[4] = 7
    np.savez(tmp_path / "k.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    assert "the test split has label 7, outside the training data's classes 0..2" in refused(tmp_path / "k.npz")


def test_a_column_of_too_many_labels_is_not_taken_for_classes(tmp_path):
    x, _ = blobs(1200, 3)
    path = write_csv(tmp_path / "pixels.csv", x, np.arange(1200))  # a running number, not a label
    assert "1,200 different labels, more than 1,000 classes; are the labels the right column?" in refused(path)
    huge = write_csv(tmp_path / "huge.csv", x[:12], np.full(12, 2**25))
    assert "labels must be integers below 16,777,216" in refused(huge)


def test_a_tampered_model_file_cannot_bring_bad_class_names(tmp_path):
    from bptrain.core.errors import ModelFileError
    from bptrain.core.network import MLP
    from bptrain.data.model_io import class_names, load_model, save_model

    model = MLP((16, 4, 3))
    assert class_names(load_model(save_model(model, tmp_path / "plain.npy"))[1], 3) == ["0", "1", "2"]
    for metadata, what in (({"class_names": ["a", "b"]}, "class_names"), ({"class_names": ["a", "a", "b"]}, "class_names"),
                           ({"class_names": ["a", "b\nc", "d"]}, "class_names"), ({"label_values": [3, 2, 1]}, "label_values"),
                           ({"image_size": [5, 5]}, "image_size")):
        path = save_model(model, tmp_path / "m.npy", metadata)
        message = one_line_error(ModelFileError, load_model, path)
        assert what in message


def test_a_fifo_is_refused_not_read(tmp_path):
    import os

    for name in ("mnist.pkl.gz", "train.csv", "k.npz"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        assert "is a FIFO (named pipe), not a regular file" in refused(fifo)  # opening it would wait for a writer forever
        fifo.unlink()


def test_a_gzipped_csv_is_told_to_be_unpacked(tmp_path):
    x, y = blobs(12, 2)
    path = tmp_path / "train.csv.gz"
    path.write_bytes(gzip.compress(write_csv(tmp_path / "train.csv", x, y).read_bytes()))
    assert "is compressed; unpack it first (gunzip -k train.csv.gz)" in refused(path)
