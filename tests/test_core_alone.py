"""The core trains by itself: from arrays, in a student's own loop (docs/library.md) and in the core's loop."""

import re
from pathlib import Path

import numpy as np

from bptrain import engines
from bptrain.core.network import MLP
from bptrain.core.training import TrainSettings, train

LIBRARY_DOC = Path(__file__).resolve().parent.parent / "docs" / "library.md"


def separable(n, features=20, classes=3, seed=0):
    """Points around one centre per class: easy to learn, hard to learn by accident."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, features))
    labels = rng.integers(0, classes, n)
    x = (centres[labels] + 0.3 * rng.normal(0, 1, (n, features)) + 2) / 4
    return x.astype(np.float32), labels


def docs_snippet() -> str:
    """The first Python block under "## Train with the core alone" in docs/library.md."""
    text = LIBRARY_DOC.read_text(encoding="utf-8")
    section = text.split("## Train with the core alone", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_docs_loop_trains_a_network_from_arrays(capsys):
    namespace = {}
    exec(compile(docs_snippet(), str(LIBRARY_DOC), "exec"), namespace)
    x, labels = separable(600)
    model, accuracy = namespace["train_by_hand"](x[:500], labels[:500], x[500:], labels[500:], sizes=(20, 16, 3),
                                                 epochs=5, lr=0.5)
    assert accuracy > 0.9
    assert np.mean(model.predict(x[500:]) == labels[500:]) == accuracy  # it kept (restored) the best epoch
    assert capsys.readouterr().out.count("validation accuracy") == 5


def test_the_docs_loop_imports_only_the_core_and_numpy():
    imports = re.findall(r"^(?:from|import) (\S+)", docs_snippet(), re.M)
    assert imports and all(name == "numpy" or name.startswith("bptrain.core") for name in imports)


def test_the_core_loop_trains_from_arrays_alone():
    x, labels = separable(600)
    model = MLP((20, 16, 3), seed=0)
    result = train(model, ((x[:500], labels[:500]), (x[500:], labels[500:])), TrainSettings(epochs=4, lr=0.5))
    assert result.best_val_accuracy > 0.9 and len(result.history) == 4


def test_the_core_loop_alone_equals_the_reference_engine_behind_the_data_side():
    """No epoch preparation given: the core shuffles as the data side does, so the runs are bit for bit equal."""
    x, labels = separable(300)
    settings = TrainSettings(epochs=3, lr=0.3, batch_size=16)
    alone, wired = MLP((20, 8, 3), seed=2), MLP((20, 8, 3), seed=2)
    train(alone, ((x[:200], labels[:200]), (x[200:], labels[200:])), settings)

    class Data:
        train, validation = (x[:200], labels[:200]), (x[200:], labels[200:])

    engines.train(wired, Data, settings, engine="reference", progress=False)
    for a, b in zip(alone.weights + alone.biases, wired.weights + wired.biases):
        assert np.array_equal(a, b)
