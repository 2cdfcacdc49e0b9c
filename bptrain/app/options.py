"""The options of ``bptrain train``, declared once.

Each :class:`Option` says everything about one setting: its name, what values
it takes, its default, its help text and its group in ``--help``. From this one
table come the click options of the ``train`` command, the keys a TOML config
may set (with the same checks) and, for the fields of
:class:`~bptrain.core.training.TrainSettings`, the defaults. Adding a setting is one
entry here plus, if the training loop needs it, one field in TrainSettings;
``tests/test_options.py`` checks that the two never drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import click

from ..core.network import ACTIVATIONS, AUTO_INIT, DTYPES, INITS, LOSSES
from ..engines import DEFAULT_ENGINE, ENGINES
from ..core.optimizers import DEFAULT_LR, OPTIMIZERS
from ..core.schedules import SCHEDULES
from ..core.training import TrainSettings

#: The declared defaults of TrainSettings' fields (lr is None there: "the optimizer's own default").
_SETTINGS_DEFAULTS = {f.name: f.default for f in fields(TrainSettings)}


# --------------------------------------------------------------------- kinds of value
@dataclass(frozen=True)
class Kind:
    """What values a setting takes: a click type for the command line, a check for configs.

    ``expected`` names the TOML type ("an integer", "a number", ...); ``check``
    returns what is wrong with a value of that type, or None. The click type
    enforces the same limits on the command line.
    """

    expected: str
    click_type: Callable[[], click.ParamType]
    check: Callable[[Any], str | None] = lambda value: None
    metavar: str | None = None

    def has_type(self, value) -> bool:
        if isinstance(value, bool):
            return self.expected == "true or false"
        if self.expected == "a number":
            return isinstance(value, (int, float))
        if self.expected == "an integer":
            return isinstance(value, int)
        if self.expected == "a string":
            return isinstance(value, str)
        return False


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and inf (click's FloatRange lets nan through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: Seeds go into JSON files and NumPy's generators: at most what a signed 64-bit integer holds.
MAX_SEED = 2**63 - 1


def integer(minimum: int, maximum: int | None = None) -> Kind:
    if maximum is None:
        words = "must be at least 1" if minimum == 1 else f"must be {minimum} or more"
    else:
        words = f"must be {minimum}..{maximum}"
    return Kind("an integer", lambda: click.IntRange(min=minimum, max=maximum),
                lambda v: None if v >= minimum and (maximum is None or v <= maximum) else words, "INTEGER")


def number(minimum: float = 0.0, *, above: bool = False, below: float | None = None,
           at_most: float | None = None, unit: str = "") -> Kind:
    """A finite number >= minimum (> minimum if ``above``), and < ``below`` or <= ``at_most`` if given."""
    if below is not None:
        words = f"must be in [{minimum:g}, {below:g})"
    elif at_most is not None:
        words = f"must be {minimum:g}..{at_most:g}{unit}"
    elif above:
        words = f"must be a finite number above {minimum:g}"
    else:
        words = f"must be a finite number, {minimum:g} or more"
    maximum = below if below is not None else at_most

    def check(value):
        try:
            value = float(value)  # an integer of hundreds of digits is no float
        except OverflowError:
            return words
        ok = math.isfinite(value) and (value > minimum if above else value >= minimum)
        return None if ok and (maximum is None or value < maximum or (at_most is not None and value == at_most)) \
            else words

    return Kind("a number", lambda: FiniteFloat(min=minimum, min_open=above, max=maximum, max_open=below is not None),
                check, "FLOAT")


def choice(options) -> Kind:
    options = tuple(options)
    return Kind("a string", lambda: click.Choice(options),
                lambda v: None if v in options else f"must be one of {', '.join(options)}")


FLAG = Kind("true or false", lambda: click.BOOL)
PATH = Kind("a string", lambda: click.Path(path_type=Path))
SIZES = Kind("sizes", lambda: SizesType())


class SizesType(click.ParamType):
    """Layer widths written as 784,128,64,10."""

    name = "SIZES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_sizes(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def parse_sizes(text: str) -> tuple[int, ...]:
    """"784,128,10" -> (784, 128, 10); at least two positive widths. Raises ValueError."""
    parts = [part.strip() for part in text.split(",")]
    if any(part == "" for part in parts):
        raise ValueError(f"{text!r} has an empty entry; write widths like 784,128,10")
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers like 784,128,10") from None
    if len(sizes) < 2:
        raise ValueError(f"{text!r} needs at least two widths (input and classes), like 784,10")
    if min(sizes) < 1:
        raise ValueError(f"{text!r}: every width must be at least 1")
    return sizes


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Option:
    """One setting of ``bptrain train``.

    ``default`` is taken from TrainSettings when the name is one of its fields
    (``cli_default`` overrides it for the command only). ``in_config`` says
    whether a TOML config may set it. ``flag`` gives a boolean's on/off
    spelling (``--nesterov/--no-nesterov``) or marks a plain flag.
    """

    name: str
    kind: Kind
    help: str
    group: str
    default: Any = None
    cli_default: Any = None
    flag: str | None = None
    metavar: str | None = None
    in_config: bool = True
    show_default: bool = True

    @property
    def cli_name(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_value(self):
        if self.cli_default is not None:
            return self.cli_default
        if self.name in SETTINGS_FIELDS:
            return _SETTINGS_DEFAULTS[self.name]
        return self.default


SETTINGS_FIELDS = frozenset(f.name for f in fields(TrainSettings))

#: The groups of ``bptrain train --help``, in the order a newcomer needs them.
GROUPS = ("The network", "Learning", "Augmentation", "Files", "Other")

#: The library leaves augmentation off (it needs square images); the command, made for MNIST, turns
#: it on, and off again with a note for inputs that are not square images.
CLI_AUGMENT = 1

TRAIN_OPTIONS: tuple[Option, ...] = (
    # the network
    Option("sizes", SIZES, "Layer widths: input, hidden..., classes.", "The network", default="784,128,64,10"),
    Option("loss", choice(LOSSES), "ce: softmax output, cross-entropy. mse: sigmoid output, quadratic cost.",
           "The network", default="ce"),
    Option("activation", choice(ACTIVATIONS), "Hidden units: sigmoid, tanh or relu (the output stays softmax "
                                              "for ce, sigmoid for mse).", "The network", default="sigmoid"),
    Option("init", choice((AUTO_INIT,) + INITS),
           "auto: follows --activation (xavier for sigmoid and tanh, he for relu). xavier: Glorot-uniform "
           "weights, zero biases. he: N(0, 2/n_in) weights, zero biases. scaled-normal: N(0, 1/n_in) weights, "
           "N(0, 1) biases (Nielsen's network2). normal: N(0, 1) weights and biases.",
           "The network", default=AUTO_INIT),
    Option("dtype", choice(tuple(DTYPES)), "float32 is twice as fast; float64 for exactness work.",
           "The network", default="float32"),
    # learning
    Option("optimizer", choice(OPTIMIZERS), "sgd: with --momentum/--nesterov. adam: Kingma & Ba with "
           "--beta1/--beta2/--eps; --weight-decay is then decoupled (AdamW: W ← W − lr·λ·W), not added to the "
           "gradient.", "Learning"),
    Option("lr", number(above=True), "Learning rate (initial, if a schedule is used) [default: "
           + ", ".join(f"{lr:g} for {name}" for name, lr in DEFAULT_LR.items()) + "].", "Learning",
           show_default=False),
    Option("epochs", integer(1), "Passes over the training set.", "Learning"),
    Option("batch_size", integer(1), "Mini-batch size; clamped to the training set size with a notice.",
           "Learning"),
    Option("momentum", number(below=1.0), "Momentum of SGD (0: plain SGD).", "Learning"),
    Option("nesterov", FLAG, "Nesterov momentum instead of classical.", "Learning", flag="--nesterov/--no-nesterov"),
    Option("weight_decay", number(), "L2 penalty on the weights (not the biases); with --optimizer adam "
                                     "decoupled, as in AdamW.", "Learning"),
    Option("beta1", number(below=1.0), "Adam: decay of the gradient's running mean.", "Learning"),
    Option("beta2", number(below=1.0), "Adam: decay of the squared gradient's running mean.", "Learning"),
    Option("eps", number(above=True), "Adam: added to √v̂ in the denominator.", "Learning"),
    Option("schedule", choice(SCHEDULES), "Learning-rate schedule over the epochs.", "Learning"),
    Option("step_size", integer(1), "Epochs between decays of the step schedule.", "Learning"),
    Option("gamma", number(above=True), "Decay factor of the step schedule.", "Learning"),
    Option("min_lr", number(), "Final learning rate of the cosine schedule.", "Learning"),
    Option("early_stopping", integer(0), "Stop after N epochs without a better validation accuracy (0: off).",
           "Learning", metavar="N"),
    # augmentation
    Option("augment", integer(0, 4), "Shift each training image by up to PIXELS, anew each epoch (0: off).",
           "Augmentation", cli_default=CLI_AUGMENT, metavar="PIXELS"),
    Option("elastic_alpha", number(), "Elastic distortion strength α in pixels (0: off; 34 in Simard et al. 2003).",
           "Augmentation", metavar="ALPHA"),
    Option("elastic_sigma", number(above=True), "Smoothness σ of the elastic field, in pixels.", "Augmentation",
           metavar="SIGMA"),
    Option("affine_rotate", number(at_most=180, unit=" degrees"), "Rotate by up to ±DEG degrees (0: off).",
           "Augmentation", metavar="DEG"),
    Option("affine_scale", number(below=1.0), "Scale by a factor in [1 − FRACTION, 1 + FRACTION] (0: off).",
           "Augmentation", metavar="FRACTION"),
    Option("affine_shear", number(at_most=1), "Shear horizontally by up to ±FRACTION (x += FRACTION · y; 0: off).",
           "Augmentation", metavar="FRACTION"),
    Option("affine_shift", number(at_most=4, unit=" pixels"), "Translate by up to ±PIXELS (subpixel) on each axis "
           "(0: off).", "Augmentation", metavar="PIXELS"),
    # files
    Option("data", PATH, "mnist.pkl.gz, IDX files or a folder of them, a .csv, a Keras .npz, or a folder of "
                         "class folders of images (docs/data.md) [default: $BPTRAIN_DATA or data/mnist.pkl.gz]",
           "Files", show_default=False),
    Option("no_download", FLAG, "Do not download mnist.pkl.gz when it is missing from the default location.",
           "Files", flag="--no-download", in_config=False),
    Option("out", PATH, "Where to save the model (.npy). An existing file is replaced only if it is a bptrain "
                        "model.", "Files", default=Path("model.npy")),
    Option("history", PATH, "Where to write the per-epoch history JSON [default: next to --out, as "
                            "NAME.history.json]. An existing file is replaced only if it is a bptrain history.",
           "Files", show_default=False),
    Option("resume", PATH, "Continue a run: its checkpoint (NAME.checkpoint.npz) continues it exactly, with its "
                           "plan; a model file starts a new plan from its weights (schedule, momentum and random "
                           "streams afresh).",
           "Files", in_config=False),
    Option("workbook", PATH, "Train with your own forward, backward and sgd_step: the workbook of `bptrain exercises "
                             "start` (DIR/backprop.py), once its check passes; plain SGD (momentum 0, or its "
                             "momentum_step's once that passes; no weight decay), sigmoid hidden units, softmax "
                             "and cross-entropy.", "Files", in_config=False,
           show_default=False),
    # other
    Option("seed", integer(0, MAX_SEED), "Seeds initialisation, shuffling and augmentation: same seed, same model file.",
           "Other"),
    Option("engine", choice(ENGINES), "fast: preallocated buffers and fused BLAS calls. reference: the readable "
           "core (bptrain/core), plain NumPy as the math is written; same results, slower.", "Other",
           default=DEFAULT_ENGINE),
    Option("quiet", FLAG, "No progress bar and no per-epoch lines.", "Other", flag="-q,--quiet", in_config=False),
)

OPTIONS_BY_NAME = {option.name: option for option in TRAIN_OPTIONS}
#: Names users bring from other trainers' scripts (PyTorch examples, Keras, Nielsen's code), and ours for
#: them: an unknown option of these names is answered "Did you mean --lr?" rather than with whatever
#: option happens to be spelt alike ("--learning-rate" is closest to "--affine-rotate" letter by letter).
OTHER_NAMES = {
    "--learning-rate": "--lr", "--learning_rate": "--lr", "--learningrate": "--lr", "--eta": "--lr",
    "--num-epochs": "--epochs", "--num_epochs": "--epochs", "--n-epochs": "--epochs", "--max-epochs": "--epochs",
    "--batch_size": "--batch-size", "--bs": "--batch-size", "--mini-batch-size": "--batch-size",
    "--weight_decay": "--weight-decay", "--wd": "--weight-decay", "--l2": "--weight-decay",
    "--hidden": "--sizes", "--layers": "--sizes",
}
#: How to read the data (bptrain.app.commands.common.data_format_options): listed with the files.
DATA_FORMAT_OPTIONS = ("label_column", "transposed", "resize", "class_names")
CONFIG_OPTIONS = {option.name: option for option in TRAIN_OPTIONS if option.in_config}
#: The settings of the training form of `bptrain serve`'s page (which `serve` also takes, to preset it):
#: what a config may set, but the files. The page's requests carry no file paths.
FORM_OPTIONS = tuple(option for option in TRAIN_OPTIONS if option.in_config and option.group != "Files")


def click_options(options=TRAIN_OPTIONS):
    """A decorator adding ``options`` to a click command, first option first in ``--help``."""

    def decorate(func):
        for option in reversed(options):
            func = table_option(option.name)(func)
        return func

    return decorate


def table_option(name: str, **overrides):
    """The click option of the table's setting ``name``, for any command; ``overrides`` replace its
    click keywords (``default``, ``help``, ``multiple``, ...): ``bench`` and ``gradcheck`` take the
    train options they share from here, with defaults of their own."""
    option = OPTIONS_BY_NAME[name]
    if option.flag is None:
        keywords = dict(type=option.kind.click_type(), default=option.default_value(),
                        show_default=option.show_default, metavar=option.metavar or option.kind.metavar,
                        help=option.help)
        return click.option(option.cli_name, option.name, **{**keywords, **overrides})
    if "/" in option.flag:  # an on/off switch, --nesterov/--no-nesterov
        keywords = dict(default=option.default_value(), show_default=option.show_default, help=option.help)
        return click.option(option.flag, option.name, **{**keywords, **overrides})
    return click.option(*option.flag.split(","), option.name, is_flag=True, **{"help": option.help, **overrides})


class GroupedHelpCommand(click.Command):
    """A command whose ``--help`` lists its options under headings (Option.group), in ``group_order``.

    Options outside the table go under ``other_groups[name]``, else under ``own_group``, which comes
    first when it is not one of ``group_order``.
    """

    own_group = "Other"
    group_order: tuple[str, ...] = GROUPS
    other_groups: dict[str, str] = {"config": "Files", **{name: "Files" for name in DATA_FORMAT_OPTIONS}}

    def group_of(self, ctx, param) -> str:
        option = OPTIONS_BY_NAME.get(param.name)
        return option.group if option is not None else self.other_groups.get(param.name, self.own_group)

    def format_options(self, ctx, formatter):
        first = {} if self.own_group in self.group_order else {self.own_group: []}  # a command's own options
        sections: dict[str, list] = {**first, **{group: [] for group in self.group_order}}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(self.group_of(ctx, param), []).append(record)
        for group, records in sections.items():
            if records:
                with formatter.section(group):
                    formatter.write_dl(records)
