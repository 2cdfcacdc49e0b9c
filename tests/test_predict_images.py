"""`bptrain predict` on image files and directories (through the real CLI), next to .npy and IDX inputs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from bptrain.app.images import image_to_input
from bptrain.data.model_io import load_model, save_model
from bptrain.core.network import MLP

from conftest import assert_clean_error, invoke

Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")


def draw(path: Path, strokes, size=(200, 160), ink=0, paper=255, fmt=None) -> Path:
    """Thick pen strokes (polylines) on paper, saved in the format ``fmt`` (default: from the name)."""
    image = Image.new("L", size, paper)
    pen = ImageDraw.Draw(image)
    for line in strokes:
        pen.line(line, fill=ink, width=12, joint="curve")
    image.save(path, format=fmt)
    return path


ONE = [[(100, 20), (100, 140)]]
SEVEN = [[(60, 25), (140, 25), (90, 140)]]
L_SHAPE = [[(70, 20), (70, 130), (130, 130)]]


@pytest.fixture
def model_path(tmp_path) -> Path:
    path = tmp_path / "model.npy"
    save_model(MLP((784, 16, 10), "ce", seed=3), path)
    return path


def expected_class(model_path: Path, image: Path) -> int:
    model, _ = load_model(model_path)
    return int(model.predict(image_to_input(image).reshape(1, -1))[0])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_one_image_is_named_and_classified_as_the_model_does(runner, tmp_path, model_path):
    seven = draw(tmp_path / "seven.png", SEVEN)
    result = ok(invoke(runner, "predict", model_path, seven))
    match = re.fullmatch(rf"{re.escape(str(seven))}: (\d) \((\d+\.\d)%\)", result.stdout.strip())
    assert match, result.stdout
    assert int(match.group(1)) == expected_class(model_path, seven)


def test_images_are_recognised_by_content_not_by_name(runner, tmp_path, model_path):
    disguised = draw(tmp_path / "digit.dat", ONE, fmt="JPEG")
    result = ok(invoke(runner, "predict", model_path, disguised, "--json"))
    (prediction,) = json.loads(result.stdout)["predictions"]
    assert prediction["file"] == str(disguised) and prediction["class"] == expected_class(model_path, disguised)
    liar = tmp_path / "photo.png"
    liar.write_text("not an image at all\n")
    assert_clean_error(invoke(runner, "predict", model_path, liar), "neither a .npy array nor an IDX image file")


def test_a_directory_is_read_in_name_order_skipping_non_images(runner, tmp_path, model_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    draw(folder / "b.bmp", ONE)
    draw(folder / "a.gif", SEVEN)
    draw(folder / "c.jpg", L_SHAPE, ink=250, paper=10)  # light on dark
    (folder / "notes.txt").write_text("my digits\n")
    (folder / "sub").mkdir()
    result = ok(invoke(runner, "predict", model_path, folder, "--json", "--top-k", 3))
    document = json.loads(result.stdout)
    files = [p["file"] for p in document["predictions"]]
    assert files == [str(folder / n) for n in ("a.gif", "b.bmp", "c.jpg")]
    assert document["inputs"] == [str(folder)] and document["input"] == str(folder)
    for p in document["predictions"]:
        assert p["index"] == 0 and p["class"] == expected_class(model_path, Path(p["file"]))
        assert len(p["top"]) == 3 and p["top"][0]["class"] == p["class"]
    notes = result.stderr.splitlines()
    assert f"note: skipping {folder / 'notes.txt'}: not a PNG, JPEG, BMP, GIF or WebP image" in notes
    assert f"note: skipping {folder / 'sub'}: a directory" in notes


@pytest.mark.parametrize("content", [None, "text"], ids=["empty", "no-images"])
def test_a_directory_without_images_is_an_error(runner, tmp_path, model_path, content):
    folder = tmp_path / "empty"
    folder.mkdir()
    if content:
        (folder / "readme.txt").write_text(content)
    assert_clean_error(invoke(runner, "predict", model_path, folder), "holds no PNG, JPEG, BMP, GIF or WebP images")


def test_images_and_arrays_together_name_file_and_index(runner, tmp_path, model_path):
    one = draw(tmp_path / "one.png", ONE)
    array = tmp_path / "two.npy"
    np.save(array, np.random.default_rng(0).random((2, 784), dtype=np.float32))
    result = ok(invoke(runner, "predict", model_path, one, array))
    names = [line.split(": ")[0] for line in result.stdout.splitlines()]
    assert names == [str(one), f"{array}[0]", f"{array}[1]"]
    document = json.loads(ok(invoke(runner, "predict", model_path, one, array, "--json")).stdout)
    assert "input" not in document and document["inputs"] == [str(one), str(array)]
    expected = [(str(one), 0), (str(array), 0), (str(array), 1)]
    assert [(p["file"], p["index"]) for p in document["predictions"]] == expected


def test_save_preprocessed_writes_what_the_network_saw(runner, tmp_path, model_path):
    seven = draw(tmp_path / "seven.png", SEVEN)
    one = draw(tmp_path / "one.jpeg", ONE, ink=255, paper=0)
    out = tmp_path / "seen" / "nested"  # created, parents too
    result = ok(invoke(runner, "predict", model_path, seven, one, "--save-preprocessed", out, "--json"))
    document = json.loads(result.stdout)
    for path, p in zip((seven, one), document["predictions"]):
        saved = out / f"{path.stem}.preprocessed.png"
        assert p["preprocessed"] == str(saved)
        with Image.open(saved) as picture:
            assert picture.mode == "L" and picture.size == (28, 28)
            pixels = np.asarray(picture)
        np.testing.assert_array_equal(pixels, np.round(image_to_input(path) * 255).reshape(28, 28))
        assert pixels[0, 0] == 0 and pixels.max() == 255  # white ink on black, as MNIST
    assert "wrote 2 preprocessed image(s)" in result.stderr


def test_save_preprocessed_never_overwrites(runner, tmp_path, model_path):
    seven = draw(tmp_path / "seven.png", SEVEN)
    one = draw(tmp_path / "one.png", ONE)
    out = tmp_path / "seen"
    out.mkdir()
    (out / "seven.preprocessed.png").write_bytes(b"mine")
    assert_clean_error(invoke(runner, "predict", model_path, one, seven, "--save-preprocessed", out), "already exists")
    assert (out / "seven.preprocessed.png").read_bytes() == b"mine"
    assert sorted(p.name for p in out.iterdir()) == ["seven.preprocessed.png"]  # one.png's not written either


def test_save_preprocessed_refuses_two_inputs_with_one_name(runner, tmp_path, model_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = draw(tmp_path / "a" / "7.png", SEVEN), draw(tmp_path / "b" / "7.gif", SEVEN)
    out = tmp_path / "seen"
    line = assert_clean_error(invoke(runner, "predict", model_path, first, second, "--save-preprocessed", out),
                              "would both be saved as")
    assert str(first) in line and str(second) in line and not out.exists()


def truncated(path: Path) -> Path:
    data = draw(path.with_suffix(".full.png"), ONE).read_bytes()
    path.with_suffix(".full.png").unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def blank(path: Path) -> Path:
    Image.new("L", (50, 50), 255).save(path)
    return path


def test_a_missing_input_stops_the_run_before_anything_is_written(runner, tmp_path, model_path):
    good = draw(tmp_path / "good.png", SEVEN)
    out = tmp_path / "seen"
    result = invoke(runner, "predict", model_path, good, tmp_path / "wrong.png", "--save-preprocessed", out)
    assert_clean_error(result, "no input file")
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_folder_with_bad_files_still_gets_its_predictions(runner, tmp_path, model_path, as_json):
    folder = tmp_path / "digits"
    folder.mkdir()
    draw(folder / "a.png", SEVEN)
    blank(folder / "b.png")
    truncated(folder / "c.png")
    draw(folder / "d.jpg", ONE, ink=250, paper=10)
    out = tmp_path / "seen"
    result = invoke(runner, "predict", model_path, folder, "--save-preprocessed", out, *(["--json"] if as_json else []))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: no ink found in {folder / 'b.png'} (it is all one colour, or the marks are too faint)",
                      f"Error: {folder / 'c.png'} is truncated or corrupt (image file is truncated)"], result.stderr
    good = [folder / "a.png", folder / "d.jpg"]
    if as_json:
        predictions = json.loads(result.stdout)["predictions"]
        assert [p["file"] for p in predictions] == [str(folder / n) for n in ("a.png", "b.png", "c.png", "d.jpg")]
        assert predictions[1] == {"file": str(folder / "b.png"), "error": errors[0].removeprefix("Error: ")}
        assert predictions[2] == {"file": str(folder / "c.png"), "error": errors[1].removeprefix("Error: ")}
        assert [p["class"] for p in (predictions[0], predictions[3])] == [expected_class(model_path, g) for g in good]
    else:
        lines = result.stdout.splitlines()
        assert [line.split(": ")[0] for line in lines] == [str(g) for g in good]
        assert [int(line.split(": ")[1][0]) for line in lines] == [expected_class(model_path, g) for g in good]
    assert sorted(p.name for p in out.iterdir()) == ["a.preprocessed.png", "d.preprocessed.png"]


def test_several_files_all_bad_exit_1_with_an_error_line_each(runner, tmp_path, model_path):
    first, second = blank(tmp_path / "first.png"), truncated(tmp_path / "second.png")
    result = invoke(runner, "predict", model_path, first, second)
    assert result.exit_code == 1 and result.stdout == ""
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 2


@pytest.mark.parametrize("bad", [blank, truncated], ids=["blank", "truncated"])
def test_one_bad_file_alone_is_one_error_line_as_before(runner, tmp_path, model_path, bad):
    path = bad(tmp_path / "wrong.png")
    phrase = "no ink found" if bad is blank else "truncated"
    for options in ([], ["--json"]):
        result = invoke(runner, "predict", model_path, path, *options)
        assert_clean_error(result, phrase, exit_code=1)
        assert result.stdout == ""


def test_ink_says_which_side_the_ink_is_on(runner, tmp_path, model_path):
    """A bold stroke cut so tight that it is mostly ink: --ink dark reads it as the page's dark strokes."""
    image = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(image).rectangle((0, 0, 59, 59), outline=0, width=20)  # a square ring, 2/3 of it ink
    path = tmp_path / "ring.png"
    image.save(path)
    assert image_to_input(path).reshape(28, 28)[14, 14] == 1  # left to itself, it takes the hole for the ink
    out = tmp_path / "seen"
    document = json.loads(ok(invoke(runner, "predict", model_path, path, "--ink", "dark", "--json",
                                    "--save-preprocessed", out)).stdout)
    assert document["predictions"][0]["class"] == int(load_model(model_path)[0].predict(
        image_to_input(path, ink="dark").reshape(1, -1))[0])
    with Image.open(out / "ring.preprocessed.png") as picture:
        seen = np.asarray(picture)
    np.testing.assert_array_equal(seen, np.round(image_to_input(path, ink="dark") * 255).reshape(28, 28))
    assert seen[14, 14] == 0 and seen[14, 5] == 255  # the hole is paper, the ring is ink
    line = assert_clean_error(invoke(runner, "predict", model_path, path, "--ink", "black"), exit_code=2)
    assert "'black' is not one of 'auto', 'dark', 'light'" in line


def test_an_image_needs_a_square_model(runner, tmp_path):
    model_path = tmp_path / "wide.npy"
    save_model(MLP((20, 4, 3), "ce"), model_path)
    assert_clean_error(invoke(runner, "predict", model_path, draw(tmp_path / "x.png", ONE)), "not a square image")


def test_other_square_sides(runner, tmp_path):
    model_path = tmp_path / "small.npy"
    save_model(MLP((256, 8, 10), "ce", seed=1), model_path)
    out = tmp_path / "seen"
    ok(invoke(runner, "predict", model_path, draw(tmp_path / "x.png", SEVEN), "--save-preprocessed", out))
    with Image.open(out / "x.preprocessed.png") as picture:
        assert picture.size == (16, 16)


def test_without_pillow_images_say_what_to_install_and_arrays_still_work(runner, tmp_path, model_path, monkeypatch):
    seven = draw(tmp_path / "seven.png", SEVEN)
    array = tmp_path / "x.npy"
    np.save(array, np.zeros((1, 784), np.float32))
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert_clean_error(invoke(runner, "predict", model_path, seven),
                       "reading images needs Pillow: pip install 'bptrain[images]'")
    assert re.fullmatch(r"0: \d \(\d+\.\d%\)\n", ok(invoke(runner, "predict", model_path, array)).stdout)


def test_an_unreadable_directory_is_one_line(runner, tmp_path, model_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    real_iterdir = Path.iterdir

    def refuse(self):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refuse)  # root ignores chmod, so refuse the listing directly
    assert_clean_error(invoke(runner, "predict", model_path, folder), "cannot read the directory")
