"""What a hostile user gives the commands that read files: FIFOs and devices where a file is expected,
names that hold newlines or bytes that are not UTF-8, a folder of many files, a config key said twice."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import resource
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

from bptrain.app.config import check_config, load_config
from bptrain.app.printable import one_line, shown_name
from bptrain.core.errors import ConfigError
from bptrain.core.network import MLP
from bptrain.data.model_io import save_model
from conftest import assert_clean_error, invoke

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are a POSIX thing")


@pytest.fixture
def model_path(tmp_path) -> Path:
    path = tmp_path / "model.npy"
    save_model(MLP((784, 16, 10), "ce", seed=3), path)
    return path


def digit_png(path: Path) -> Path:
    Image = pytest.importorskip("PIL.Image")
    gray = np.full((40, 32), 255, np.uint8)
    gray[8:32, 14:19] = 0
    Image.fromarray(gray).save(path, format="PNG")
    return path


def _bounded():
    """In the child: at most 4 GB of address space, so a device read to its (missing) end fails the test
    with a MemoryError rather than filling the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))


def bptrain(*args, cwd=None, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    """The real command in a new process: a FIFO that blocks it fails the test by its timeout, not by hanging."""
    return subprocess.run([sys.executable, "-m", "bptrain", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, preexec_fn=_bounded, **kwargs)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error:"), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# ------------------------------------------------------------------ files that are not files
@needs_fifo
@pytest.mark.parametrize("where", ["alone", "among files"])
def test_a_fifo_given_to_predict_is_refused_in_one_line(tmp_path, model_path, where):
    fifo = tmp_path / "digits.npy"
    os.mkfifo(fifo)
    extra = [digit_png(tmp_path / "one.png")] if where == "among files" else []
    done = bptrain("predict", model_path, *extra, fifo)
    line = one_error_line(done)
    assert str(fifo) in line and "FIFO" in line and "not a regular file" in line
    assert done.stdout == ""  # refused before anything was read or printed


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_given_to_predict_is_refused_in_one_line(model_path, device):
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    line = one_error_line(bptrain("predict", model_path, device))
    assert device in line and "device" in line


@needs_fifo
def test_a_fifo_as_config_is_refused_in_one_line(tmp_path, synthetic_data):
    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    done = bptrain("train", "--config", fifo, "--data", synthetic_data, "--out", tmp_path / "m.npy")
    line = one_error_line(done)
    assert done.returncode == 2 and str(fifo) in line and "FIFO" in line
    assert not (tmp_path / "m.npy").exists()


@needs_fifo
def test_a_fifo_in_a_folder_is_skipped_with_a_note(tmp_path, model_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    digit_png(folder / "a.png")
    os.mkfifo(folder / "b.png")
    done = bptrain("predict", model_path, folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "a.png" in done.stdout and "b.png" in done.stderr


@needs_fifo
def test_the_fifo_check_is_made_on_what_was_opened(tmp_path):
    """No window between a check and the open: the open itself does not wait, and what it opened is checked."""
    from bptrain.core.errors import DataError
    from bptrain.data.regular import open_regular

    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="is a FIFO"):
        open_regular(fifo, DataError)
    with pytest.raises(IsADirectoryError):
        open_regular(tmp_path, DataError)
    (tmp_path / "x").write_bytes(b"abc")
    with open_regular(tmp_path / "x", DataError) as handle:
        assert handle.read() == b"abc"


def test_a_device_as_config_is_refused_in_one_line(tmp_path, synthetic_data):
    """/dev/zero never ends: read as TOML it would fill the memory (here: the child's 4 GB, then fail)."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    done = bptrain("train", "--config", "/dev/zero", "--data", synthetic_data, "--out", tmp_path / "m.npy")
    assert "config /dev/zero is a character device, not a regular file" in one_error_line(done)


# ------------------------------------------------------------------ names that are not lines
def test_shown_name_leaves_ordinary_names_and_quotes_the_others():
    assert shown_name("digits/seven 7 (copy).png") == "digits/seven 7 (copy).png"
    assert shown_name("chiffres/été.png") == "chiffres/été.png"
    assert shown_name("a\nforged.png: 7 (100.0%)") == "'a\\nforged.png: 7 (100.0%)'"
    assert shown_name("tab\there") == "'tab\\there'"
    assert shown_name("esc\x1b[31mred") == "'esc\\x1b[31mred'"
    assert shown_name(os.fsdecode(b"caf\xe9.png")) == "'caf\\xe9.png'"  # a byte that is not UTF-8
    assert shown_name("it's\n") == "'it\\'s\\n'"
    assert shown_name("line\u2028sep") == "'line\\u2028sep'"
    assert one_line("no such file a\nb\rc") == "no such file a\\nb\\rc"


@pytest.mark.skipif(sys.platform == "win32", reason="newlines in file names are a POSIX thing")
def test_a_newline_in_a_file_name_cannot_forge_an_output_line(tmp_path, model_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    digit_png(folder / "a.png")
    forged = digit_png(folder / "b.png\nforged.png: 7 (100.0%)")
    done = bptrain("predict", model_path, folder)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and not any(line.startswith("forged.png") for line in lines), lines
    assert lines[1].startswith(repr(str(forged)).replace('"', "'")[:20])
    data = json.loads(bptrain("predict", model_path, folder, "--json").stdout)  # JSON keeps the real name
    assert [p["file"] for p in data["predictions"]][1] == str(forged)


@pytest.mark.skipif(sys.platform == "win32", reason="bytes in file names are a POSIX thing")
def test_names_that_are_not_utf8_or_hold_newlines_stay_on_their_line_in_errors(tmp_path, model_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    digit_png(folder / "a.png")
    bad = os.path.join(os.fsencode(folder), b"caf\xe9\nError: forged.png")
    with open(bad, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + bytes(20))  # looks like a PNG, is not one
    done = bptrain("predict", model_path, folder)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "\\xe9\\nError: forged.png" in errors[0], done.stderr
    assert len(done.stdout.splitlines()) == 1
    missing = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"gone\nError: forged"))
    line = one_error_line(bptrain("predict", model_path, missing))
    assert "gone\\nError: forged" in line


# ------------------------------------------------------------------ many files
def many_digits(folder: Path, n: int) -> Path:
    folder.mkdir()
    source = digit_png(folder / f"{0:05d}.png").read_bytes()
    for i in range(1, n):
        (folder / f"{i:05d}.png").write_bytes(source)
    return folder


def in_a_terminal(*args) -> tuple[int, str, str]:
    """Run bptrain with its stderr on a pseudo-terminal (as a user's); returns (exit code, stdout, stderr)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a user's 100 x 24 terminal
    process = subprocess.Popen([sys.executable, "-m", "bptrain", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed: the process is done
            break
        if not chunk:
            break
        seen += chunk
    stdout = process.stdout.read().decode()
    process.stdout.close()
    code = process.wait(timeout=300)
    os.close(leader)
    return code, stdout, seen.decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are a POSIX thing")
def test_a_big_folder_shows_progress_in_a_terminal_and_nothing_else(tmp_path, model_path):
    folder = many_digits(tmp_path / "many", 300)
    code, stdout, stderr = in_a_terminal("predict", model_path, folder)
    assert code == 0 and len(stdout.splitlines()) == 300
    assert "reading:" in stderr and "/300 [" in stderr and "file/s" in stderr, stderr[-500:]
    assert stderr.rstrip(" ").endswith("\r")  # and the bar is cleared away: only the predictions remain
    code, stdout, stderr = in_a_terminal("predict", model_path, folder, "--quiet")
    assert code == 0 and len(stdout.splitlines()) == 300 and "300" not in stderr, stderr[-500:]


def test_no_progress_bar_when_stderr_is_not_a_terminal(runner, tmp_path, model_path):
    folder = many_digits(tmp_path / "many", 30)
    result = invoke(runner, "predict", model_path, folder)
    assert result.exit_code == 0 and result.stderr == "" and len(result.stdout.splitlines()) == 30


# ------------------------------------------------------------------ a key said twice
@pytest.mark.parametrize("text", ["batch_size = 10\nbatch-size = 20\n", "batch-size = 20\nbatch_size = 20\n"])
def test_a_key_written_two_ways_is_refused_naming_both(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "'batch_size'" in message and "'batch-size'" in message and "\n" not in message
    assert str(path) in message


def test_a_key_written_two_ways_is_refused_by_the_cli(runner, tmp_path, synthetic_data):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 1\nbatch_size = 10\nbatch-size = 20\n")
    result = invoke(runner, "train", "--config", path, "--data", synthetic_data, "--out", tmp_path / "m.npy")
    assert "batch_size" in assert_clean_error(result, "batch-size", exit_code=2)
    assert not (tmp_path / "m.npy").exists()


def test_check_config_says_the_same_for_the_page():
    with pytest.raises(ConfigError, match="'batch_size' and 'batch-size'"):
        check_config({"batch_size": 10, "batch-size": 10}, where=None)


@needs_fifo
@pytest.mark.parametrize("as_what", ["model", "data file", "IDX file in a data directory", "committee member"])
def test_a_fifo_anywhere_predict_or_train_reads_is_refused(tmp_path, model_path, synthetic_data, as_what):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if as_what == "model":
        done = bptrain("predict", fifo, digit_png(tmp_path / "one.png"))
    elif as_what == "committee member":
        done = bptrain("predict", model_path, digit_png(tmp_path / "one.png"), "--committee", fifo)
    elif as_what == "data file":
        done = bptrain("train", "--data", fifo, "--epochs", "1", "--out", tmp_path / "m.npy")
    else:
        folder = tmp_path / "idx"
        folder.mkdir()
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
            (folder / name).write_bytes(b"")
        os.mkfifo(folder / "t10k-labels-idx1-ubyte")
        fifo = folder
        done = bptrain("train", "--data", folder, "--epochs", "1", "--out", tmp_path / "m.npy")
    line = one_error_line(done)  # one line, at once: the subprocess's timeout is what a blocked open() would meet
    assert str(fifo) in line and ("FIFO" in line or as_what.startswith("IDX")), line


@pytest.mark.skipif(sys.platform == "win32", reason="newlines in file names are a POSIX thing")
def test_explain_names_its_image_on_one_line(tmp_path, model_path):
    image = digit_png(tmp_path / "b.png\nforged: 7")
    done = bptrain("explain", model_path, image)
    assert done.returncode == 0, done.stderr
    assert "'" + str(image).replace("\n", "\\n") + "'" in done.stdout
    assert not any(line.startswith("forged") for line in done.stdout.splitlines())
