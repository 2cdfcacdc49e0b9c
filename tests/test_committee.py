"""Committees: several saved networks vote by averaging their class probabilities (bptrain eval MODEL...,
bptrain predict --committee). The core is checked on networks built by hand, whose votes are known; the
commands on networks trained on synthetic data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bptrain import Committee
from bptrain.core.committee import class_probabilities, mean_negative_log_likelihood
from bptrain.core.errors import ModelFileError
from bptrain.core.network import MLP
from bptrain.data.model_io import load_model, save_model

from conftest import assert_clean_error, invoke, make_blobs, write_py2_pickle

N_CLASSES = 3


def one_blind_spot(k: int) -> MLP:
    """A 3-3 network (no hidden layer) that reads one-hot inputs: right and sure about every class except
    class k, which it calls k+1 with p of about 0.5."""
    logits = 3.0 * np.eye(N_CLASSES)
    logits[k] = 0.0
    logits[k, k], logits[k, (k + 1) % N_CLASSES] = 0.5, 1.0
    return MLP((N_CLASSES, N_CLASSES), "ce", weights=[logits], biases=[np.zeros(N_CLASSES)], dtype=np.float64)


def test_a_committee_corrects_mistakes_its_members_do_not_share():
    x, labels = np.eye(N_CLASSES), np.arange(N_CLASSES)
    members = [one_blind_spot(k) for k in range(N_CLASSES)]
    for k, model in enumerate(members):
        assert (model.predict(x) == labels).tolist() == [c != k for c in range(N_CLASSES)]  # 2 of 3 right
    committee = Committee(members)
    assert committee.predict(x).tolist() == labels.tolist()  # 3 of 3 right
    probabilities = committee.predict_proba(x)
    np.testing.assert_allclose(probabilities, np.mean([m.predict_proba(x) for m in members], axis=0))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_a_committee_of_one_is_the_network_itself():
    model = MLP((20, 16, 3), "ce", seed=1, activation="relu")
    x = make_blobs()[2][0]
    committee = Committee([model])
    np.testing.assert_array_equal(committee.predict_proba(x), model.predict_proba(x).astype(np.float64))
    np.testing.assert_array_equal(committee.predict(x), model.predict(x))


def test_mse_members_vote_with_normalised_outputs():
    """Sigmoid outputs need not sum to 1; each member's are scaled to do so before they are averaged."""
    members = [MLP((20, 8, 3), "mse", seed=s) for s in (1, 2)]
    x = make_blobs()[2][0][:10]
    for model in members:
        raw = model.predict_proba(x).astype(np.float64)
        np.testing.assert_allclose(class_probabilities(model, x), raw / raw.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(Committee(members).predict_proba(x).sum(axis=1), 1.0)


def test_members_may_differ_inside_but_not_at_the_ends():
    x = make_blobs()[2][0][:5]
    Committee([MLP((20, 16, 3), seed=1), MLP((20, 40, 9, 3), seed=2, activation="tanh")]).predict(x)
    with pytest.raises(ModelFileError, match=r"b\.npy \(20-16-4\) cannot vote with a\.npy \(20-16-3\)"):
        Committee([MLP((20, 16, 3)), MLP((20, 16, 4))], names=["a.npy", "b.npy"])
    with pytest.raises(ModelFileError, match="same input width"):
        Committee([MLP((20, 16, 3)), MLP((21, 16, 3))])


def test_the_committee_loss_is_the_cross_entropy_of_its_probabilities():
    model = MLP((20, 16, 3), "ce", seed=4, dtype=np.float64)
    x, labels = make_blobs()[2]
    loss, _ = model.evaluate(x, labels)
    assert mean_negative_log_likelihood(Committee([model]).predict_proba(x), labels) == pytest.approx(loss, rel=1e-9)


# ====================================================================== the commands
@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    """Three 20-6-3 networks trained briefly from different seeds on a noisy synthetic set (so they err,
    and not all alike), and that set."""
    from click.testing import CliRunner

    from bptrain.app.commands import cli

    directory = tmp_path_factory.mktemp("committee")
    data = write_py2_pickle(directory / "noisy.pkl.gz", make_blobs(spread=0.3, seed=7))
    paths = []
    for seed in (1, 2, 3):
        out = directory / f"seed{seed}.npy"
        result = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(out), "--sizes", "20,6,3",
                                          "--epochs", "2", "--lr", "0.3", "--batch-size", "32", "--augment", "0",
                                          "--seed", str(seed), "-q"])
        assert result.exit_code == 0, result.output
        paths.append(out)
    return data, paths


def test_eval_of_several_models_scores_their_averaged_probabilities(runner, three_models):
    data, paths = three_models
    result = invoke(runner, "eval", *paths, "--data", data, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)

    from bptrain.data.loader import load_dataset

    x, labels = load_dataset(data).split("test")
    models = [load_model(p)[0] for p in paths]
    probabilities = np.mean([m.predict_proba(x).astype(np.float64) for m in models], axis=0)
    assert document["accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == labels))
    assert document["loss_kind"] == "nll"
    assert document["loss"] == pytest.approx(mean_negative_log_likelihood(probabilities, labels), rel=1e-6)
    assert [m["model"] for m in document["committee"]] == [str(p) for p in paths]
    for member, path in zip(document["committee"], paths):  # each member scored as `eval` scores it alone
        alone = json.loads(invoke(runner, "eval", path, "--data", data, "--json").stdout)
        assert member["accuracy"] == pytest.approx(alone["accuracy"])
        assert member["sizes"] == [20, 6, 3]
    assert sum(map(sum, document["confusion_matrix"])) == document["samples"] == len(labels)


def test_eval_of_several_models_prints_each_member_and_the_committee(runner, three_models):
    data, paths = three_models
    result = invoke(runner, "eval", *paths, "--data", data)
    assert result.exit_code == 0, result.output
    assert "a committee of 3 models on the test split" in result.stdout
    members = re.findall(r"seed\d\.npy\s+20-6-3 sigmoid\s+accuracy (\d+\.\d\d)%", result.stdout)
    assert len(members) == 3
    assert re.search(r"committee accuracy \d+\.\d\d%", result.stdout)
    assert "confusion matrix" in result.stdout


def test_eval_refuses_one_model_twice(runner, three_models, tmp_path, monkeypatch):
    data, paths = three_models
    assert_clean_error(invoke(runner, "eval", paths[0], paths[1], paths[0], "--data", data), "given twice",
                       exit_code=2)
    monkeypatch.chdir(paths[0].parent)
    assert_clean_error(invoke(runner, "eval", paths[0].name, paths[0], "--data", data), "one file",
                       exit_code=2)


def test_eval_refuses_members_that_cannot_vote_together(runner, three_models, tmp_path):
    data, paths = three_models
    other = tmp_path / "four-classes.npy"
    save_model(MLP((20, 6, 4), seed=0), other)
    assert_clean_error(invoke(runner, "eval", paths[0], other, "--data", data), "cannot vote with", exit_code=1)


def test_predict_with_a_committee_averages_the_probabilities(runner, three_models, tmp_path):
    data, paths = three_models
    images = make_blobs(spread=0.3, seed=7)[2][0][:8]
    array = tmp_path / "images.npy"
    np.save(array, images)
    result = invoke(runner, "predict", paths[0], array, "--committee", paths[1], "--committee", paths[2],
                    "--json", "--top-k", "3")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["committee"] == [str(p) for p in paths]
    expected = np.mean([load_model(p)[0].predict_proba(images).astype(np.float64) for p in paths], axis=0)
    for row, prediction in zip(expected, document["predictions"]):
        assert prediction["class"] == int(row.argmax())
        for entry in prediction["top"]:
            assert entry["probability"] == pytest.approx(row[entry["class"]], rel=1e-6)


def test_predict_committee_errors_are_one_line(runner, three_models, tmp_path):
    _, paths = three_models
    array = tmp_path / "images.npy"
    np.save(array, np.zeros((2, 20), np.float32))
    assert_clean_error(invoke(runner, "predict", paths[0], array, "--committee", paths[0]), "given twice")
    assert_clean_error(invoke(runner, "predict", paths[0], array, "--committee", tmp_path / "missing.npy"),
                       "missing.npy")


def test_a_committee_too_big_for_the_memory_is_refused_before_loading(runner, three_models, tmp_path, monkeypatch):
    from bptrain.app import memory

    data, paths = three_models
    monkeypatch.setattr(memory, "available_bytes", lambda: sum(p.stat().st_size for p in paths) - 1)
    monkeypatch.setattr("bptrain.app.commands.evaluate.load_model", lambda path: pytest.fail("loaded a model"))
    line = assert_clean_error(invoke(runner, "eval", *paths, "--data", data), "use fewer models", exit_code=1)
    assert "the 3 models need about" in line
    array = tmp_path / "images.npy"
    np.save(array, np.zeros((2, 20), np.float32))
    assert_clean_error(invoke(runner, "predict", paths[0], array, "--committee", paths[1], "--committee", paths[2]),
                       "use fewer models", exit_code=1)
    monkeypatch.undo()
    assert invoke(runner, "eval", *paths, "--data", data).exit_code == 0
