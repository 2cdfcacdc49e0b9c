"""A checkpoint's files live beside it: resumed from another directory, or from a copied folder, it writes
beside itself; ``--out NEW`` writes a new history too; a finished run's missing checkpoint says so."""

from __future__ import annotations

import shutil

from bptrain.data.model_io import load_model
from conftest import assert_clean_error, invoke
from test_checkpoints import SIZES, StopAfter


def _stopped_run(runner, monkeypatch, folder, data, out="runs/m.npy", epochs=6, k=2):
    """A run started in ``folder`` with relative paths, stopped (as by Ctrl-C) after epoch k."""
    from bptrain.app.commands import train as train_module

    real = train_module.train
    monkeypatch.setattr(train_module, "train",
                        lambda *a, callbacks=(), **kw: real(*a, callbacks=[*callbacks, StopAfter(k)], **kw))
    monkeypatch.chdir(folder)
    result = invoke(runner, "train", "--data", data, *SIZES, "--out", out, "--epochs", epochs)
    monkeypatch.setattr(train_module, "train", real)
    assert result.exit_code == 130, result.output + result.stderr
    return result


def _project(tmp_path, synthetic_data):
    project = tmp_path / "project"
    (project / "runs").mkdir(parents=True)
    shutil.copy(synthetic_data, project / "syn.pkl.gz")
    return project


def test_a_run_resumed_from_its_own_folder_writes_beside_its_checkpoint(runner, monkeypatch, tmp_path, synthetic_data):
    project = _project(tmp_path, synthetic_data)
    _stopped_run(runner, monkeypatch, project, "syn.pkl.gz")
    monkeypatch.chdir(project / "runs")  # as `info` suggests: cd runs && bptrain train --resume ...
    resumed = invoke(runner, "train", "--resume", "m.checkpoint.npz", "-q")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert load_model(project / "runs" / "m.npy")[1]["epochs_run"] == 6
    assert not (project / "runs" / "runs").exists()
    assert not (project / "runs" / "m.checkpoint.npz").exists()


def test_a_run_resumed_twice_from_other_folders_still_finds_its_data(runner, monkeypatch, tmp_path, synthetic_data):
    from bptrain.app.commands import train as train_module

    project = _project(tmp_path, synthetic_data)
    _stopped_run(runner, monkeypatch, project, "syn.pkl.gz", epochs=8, k=2)
    real = train_module.train
    monkeypatch.setattr(train_module, "train",
                        lambda *a, callbacks=(), **kw: real(*a, callbacks=[*callbacks, StopAfter(5)], **kw))
    monkeypatch.chdir(project / "runs")
    again = invoke(runner, "train", "--resume", "m.checkpoint.npz", "-q")
    assert again.exit_code == 130, again.output + again.stderr
    monkeypatch.setattr(train_module, "train", real)
    monkeypatch.chdir(tmp_path)
    last = invoke(runner, "train", "--resume", project / "runs" / "m.checkpoint.npz", "-q")
    assert last.exit_code == 0, last.output + last.stderr
    meta = load_model(project / "runs" / "m.npy")[1]
    assert meta["epochs_run"] == 8 and meta["data"] == "syn.pkl.gz"  # recorded as the run first recorded it


def test_a_copied_run_folder_resumed_writes_into_the_copy(runner, monkeypatch, tmp_path, synthetic_data):
    project = _project(tmp_path, synthetic_data)
    _stopped_run(runner, monkeypatch, project, "syn.pkl.gz")
    original = {p.name: p.read_bytes() for p in (project / "runs").iterdir()}
    copy = tmp_path / "copy"
    shutil.copytree(project / "runs", copy)
    monkeypatch.chdir(tmp_path)
    info = invoke(runner, "info", copy / "m.npy")
    assert f"writes {copy / 'm.npy'}" in info.output, info.output  # info names the file the resume writes
    resumed = invoke(runner, "train", "--resume", copy / "m.checkpoint.npz", "-q")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert {p.name: p.read_bytes() for p in (project / "runs").iterdir()} == original  # the original untouched
    assert load_model(copy / "m.npy")[1]["epochs_run"] == 6
    assert (copy / "m.history.json").read_bytes() != original["m.history.json"]


def test_resume_with_a_new_out_writes_a_new_history_and_keeps_the_old_runs(runner, monkeypatch, tmp_path,
                                                                          synthetic_data):
    project = _project(tmp_path, synthetic_data)
    _stopped_run(runner, monkeypatch, project, "syn.pkl.gz")
    old_history = (project / "runs" / "m.history.json").read_bytes()
    old_model = (project / "runs" / "m.npy").read_bytes()
    resumed = invoke(runner, "train", "--resume", "runs/m.checkpoint.npz", "--out", "new.npy", "-q")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert load_model(project / "new.npy")[1]["epochs_run"] == 6
    assert (project / "new.history.json").is_file()
    assert (project / "runs" / "m.history.json").read_bytes() == old_history
    assert (project / "runs" / "m.npy").read_bytes() == old_model


def test_resuming_a_finished_run_says_it_finished_and_where_its_model_is(runner, monkeypatch, tmp_path,
                                                                        synthetic_data):
    project = _project(tmp_path, synthetic_data)
    monkeypatch.chdir(project)
    done = invoke(runner, "train", "--data", "syn.pkl.gz", *SIZES, "--out", "runs/m.npy", "--epochs", 2, "-q")
    assert done.exit_code == 0, done.output
    line = assert_clean_error(invoke(runner, "train", "--resume", "runs/m.checkpoint.npz"), exit_code=1)
    assert "finished" in line and "runs/m.npy" in line and "--resume runs/m.npy" in line, line


def test_a_resumed_run_reads_its_data_as_it_was_read(runner, monkeypatch, tmp_path):
    """A CSV whose labels are its last column (--label-column 16): the resumed run reads it so without being
    told again, and ends where the run that was never stopped ends."""
    from test_data_formats import blobs

    x, y = blobs(60, 3)
    folder = tmp_path / "csv"
    (folder / "runs").mkdir(parents=True)
    (folder / "last.csv").write_text("".join(",".join(map(str, row)) + f",{label}\n"
                                             for row, label in zip(x.reshape(60, -1), y)))
    args = ["--data", "last.csv", "--label-column", "16", "--sizes", "16,12,3", "--batch-size", "4", "--epochs", "4"]
    monkeypatch.chdir(folder)
    whole = invoke(runner, "train", *args, "--out", "runs/whole.npy", "-q")
    assert whole.exit_code == 0, whole.output + whole.stderr

    from bptrain.app.commands import train as train_module
    real = train_module.train
    monkeypatch.setattr(train_module, "train",
                        lambda *a, callbacks=(), **kw: real(*a, callbacks=[*callbacks, StopAfter(2)], **kw))
    stopped = invoke(runner, "train", *args, "--out", "runs/m.npy", "-q")
    monkeypatch.setattr(train_module, "train", real)
    assert stopped.exit_code == 130, stopped.output + stopped.stderr
    resumed = invoke(runner, "train", "--resume", "runs/m.checkpoint.npz", "-q")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    resumed_model, whole_model = (load_model(folder / "runs" / name)[0] for name in ("m.npy", "whole.npy"))
    assert all((p == q).all() for p, q in zip(resumed_model.weights + resumed_model.biases,
                                              whole_model.weights + whole_model.biases))
