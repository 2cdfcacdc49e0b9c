"""The checker: runs the learner's functions in order, says passed / not done yet / failed, names the mistake.

Each exercise runs on the cases of :mod:`.cases` with read-only inputs, its output compared with the
core's (and, for the gradients, a numerical gradient) by cs231n's relative error. A wrong output is
compared with every variant of :mod:`.mistakes`, alone and two together, and the closest is named. An
exception in the learner's code is shown with the frames of their own code only.
"""

from __future__ import annotations

import itertools
import signal
import threading
import traceback
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.regular import read_small
from . import mistakes
from .cases import Case, arguments, cases_for, core_line, reference, rel_error
from .workbook import BY_NAME, EXERCISES, WorkbookError

#: Largest relative error (cs231n's) that passes, by dtype; a wrong variant "matches" within the same.
TOLERANCE = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-4}
#: A numerical gradient is right within this of backprop's (GUIDE: below 1e-6 in float64).
NUMERICAL_TOLERANCE = 1e-6
#: The largest workbook the checker reads: far more than ten functions need.
MAX_WORKBOOK_BYTES = 1 << 20
#: Seconds an exercise may run before the checker gives up on it (an endless loop).
TIME_LIMIT = 20

STATUS_WORDS = {"passed": "passed", "not-done": "not done yet", "failed": "failed"}


@dataclass
class Result:
    """What the checker says of one exercise (the JSON report's fields)."""

    exercise: str
    status: str  # "passed" | "not-done" | "failed"
    mistake: str | None
    message: str
    optional: bool

    def to_json(self) -> dict:
        return {"exercise": self.exercise, "status": self.status, "mistake": self.mistake, "message": self.message,
                "optional": self.optional}


class _Timeout(Exception):
    pass


# ------------------------------------------------------------------ loading the learner's file
def load_workbook(path: Path) -> tuple[dict, str | None]:
    """(the workbook's names, None) or ({}, why it did not load); a file the checker cannot read at all is
    a :class:`WorkbookError`. The file is compiled under its own path, so that frames name it."""
    path = Path(path)
    raw = read_small(path, WorkbookError, "the workbook", MAX_WORKBOOK_BYTES)
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkbookError(f"cannot read the workbook {path}: {exc}") from None
    filename = str(path.resolve())
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return {}, f"{path}, line {exc.lineno}: {type(exc).__name__}: {exc.msg}"
    module = types.ModuleType("backprop_workbook")
    module.__file__ = filename
    saved = np.geterr()
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:  # the learner's code, as it loads (even an exit() in it)
        return {}, f"{path} did not load:\n{learner_frames(exc, {filename})}"
    finally:
        np.seterr(**saved)  # an np.seterr in the workbook stays the workbook's, not this process's
    return module.__dict__, None


def learner_frames(exc: BaseException, filenames) -> str:
    """The traceback of ``exc`` with the frames of ``filenames`` only (the learner's code), then the error."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename in filenames]
    lines = [f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n    {(frame.line or "").strip()}'
             for frame in frames]
    return "\n".join(lines + [f"{type(exc).__name__}: {exc}"])


# ------------------------------------------------------------------ running one exercise on one case
def _read_only(value):
    if isinstance(value, np.ndarray):
        copy = value.copy()
        copy.flags.writeable = False
        return copy
    if isinstance(value, list):
        return [_read_only(item) for item in value]
    return value


@dataclass
class Outcome:
    output: object = None
    error: BaseException | None = None
    warned: bool = False
    changed: str | None = None  # an input changed (a list's items), named


def run(function, args: tuple) -> Outcome:
    """Call the learner's ``function`` on read-only copies of ``args``; catch what it raises and warns."""
    given = tuple(_read_only(arg) for arg in args)
    kept = [list(arg) if isinstance(arg, list) else None for arg in given]
    outcome = Outcome()
    with warnings.catch_warnings(record=True) as caught, np.errstate(over="warn", divide="warn", invalid="warn",
                                                                       under="ignore"):
        warnings.simplefilter("always")
        try:
            with _time_limit(TIME_LIMIT):
                outcome.output = function(*given)
        except (Exception, SystemExit) as exc:  # the learner's code: whatever it raises is reported
            outcome.error = exc
    outcome.warned = any(issubclass(w.category, RuntimeWarning) for w in caught)
    for number, (arg, before, original) in enumerate(zip(given, kept, args), 1):
        if before is not None and (len(arg) != len(before) or any(a is not b for a, b in zip(arg, before))):
            outcome.changed = f"argument {number} (a list) was changed"
        elif isinstance(arg, np.ndarray) and not np.array_equal(arg, original, equal_nan=True):
            outcome.changed = f"argument {number} (an array) was changed"
    return outcome


class _time_limit:
    """Raise :class:`_Timeout` in the learner's code after ``seconds`` (main thread on Unix; elsewhere none)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self.armed:
            self.previous = signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def _expired(self, signum, frame):
        raise _Timeout(f"still running after {self.seconds:g} s (an endless loop?)")

    def __exit__(self, *exc):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


# ------------------------------------------------------------------ comparing outputs
def flatten(exercise: str, output, case: Case):
    """[(name, array)] of an output in the shape its exercise returns; a string saying what is wrong if not."""
    L = len(case.sizes) - 1
    if exercise in ("cross_entropy", "rel_error"):
        if isinstance(output, (bool, np.bool_)) or not isinstance(output, (int, float, np.floating, np.integer)) \
                and not (isinstance(output, np.ndarray) and output.shape == ()):
            return f"returned {_describe(output)}; it should return a float"
        return [("C" if exercise == "cross_entropy" else "the relative error", np.asarray(output, np.float64))]
    if exercise in ("sigmoid", "sigmoid_prime", "softmax", "output_delta", "delta_below", "numerical_gradient"):
        return [("the result", output)] if isinstance(output, np.ndarray) else \
            f"returned {_describe(output)}; it should return an array"
    names = {"layer_gradients": (("dW", None), ("db", None)), "forward": (("Zs", L), ("As", L + 1)),
             "backward": (("dWs", L), ("dbs", L)), "sgd_step": (("new Ws", L), ("new bs", L)),
             "momentum_step": (("new Ws", L), ("new bs", L), ("new vWs", L), ("new vbs", L))}[exercise]
    if not isinstance(output, (tuple, list)) or len(output) != len(names):
        return f"returned {_describe(output)}; it should return ({', '.join(name for name, _ in names)})"
    items = []
    for (name, length), part in zip(names, output):
        if length is None:
            if not isinstance(part, np.ndarray):
                return f"{name} is {_describe(part)}; it should be an array"
            items.append((name, part))
            continue
        if not isinstance(part, (list, tuple)) or len(part) != length:
            return f"{name} is {_describe(part)}; it should be a list of {length} arrays"
        for index, item in enumerate(part):
            if not isinstance(item, np.ndarray):
                return f"{name}[{index}] is {_describe(item)}; it should be an array"
            items.append((f"{name}[{index}]", item))
    return items


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return "None" if value is None else f"a {type(value).__name__}"


def distance(mine, theirs) -> float:
    """The largest relative error between two flattened outputs (inf if their shapes differ); nan where
    both are nan, and infinities of the same sign where both are, count as equal."""
    if isinstance(mine, str) or isinstance(theirs, str) or len(mine) != len(theirs):
        return float("inf")
    worst = 0.0
    for (_, a), (_, b) in zip(mine, theirs):
        if np.shape(a) != np.shape(b):
            return float("inf")
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        same = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
        if np.any(~np.isfinite(a) & ~same) or np.any(~np.isfinite(b) & ~same):
            return float("inf")
        worst = max(worst, rel_error(np.where(same, 0, a), np.where(same, 0, b)))
    return worst


def _worst_item(mine, theirs):
    """(name, relative error) of the item of two flattened outputs that differs most."""
    errors = [(name, distance([(name, a)], [(name, b)])) for (name, a), (_, b) in zip(mine, theirs)]
    return max(errors, key=lambda item: item[1])


# ------------------------------------------------------------------ naming the mistake
def closest_mistake(exercise: str, case: Case, mine):
    """(forms, relative error) of the variant closest to ``mine`` on ``case``, alone or in pairs; None if
    none comes within the case's tolerance."""
    args = arguments(exercise, case)
    right = flatten(exercise, reference(exercise, case), case)
    candidates = {}
    for form in mistakes.VALUE_FORMS:
        try:
            flat = flatten(exercise, mistakes.compute(exercise, args, {form}), case)
        except (mistakes.Raised, KeyError):
            continue
        if distance(flat, right) > 0:  # the form changes this exercise
            candidates[(form,)] = flat
    pairs = {}
    for a, b in itertools.combinations(list(candidates), 2):
        if mistakes.mistake_id(a[0]) == mistakes.mistake_id(b[0]):
            continue
        try:
            pairs[a + b] = flatten(exercise, mistakes.compute(exercise, args, {a[0], b[0]}), case)
        except mistakes.Raised:
            continue
    tolerance = TOLERANCE[np.dtype(case.dtype)] * 10
    for group in (candidates, pairs):  # one mistake explains it better than two
        scored = sorted((distance(mine, flat), forms) for forms, flat in group.items())
        if scored and scored[0][0] <= tolerance:
            return scored[0][1], scored[0][0]
    partial = sorted((_partly(mine, right, flat), forms) for forms, flat in candidates.items())
    if partial and partial[0][0] <= tolerance:  # made in some of the outputs only (the weights, not the biases)
        return partial[0][1], partial[0][0]
    return None


def _partly(mine, right, variant) -> float:
    """How well ``mine`` is, item by item, either right or the variant's, the variant at least once."""
    if isinstance(mine, str) or len(mine) != len(right) or len(mine) != len(variant):
        return float("inf")
    worst, used = 0.0, False
    for item, good, wrong in zip(mine, right, variant):
        to_good, to_wrong = distance([item], [good]), distance([item], [wrong])
        used = used or to_wrong < to_good
        worst = max(worst, min(to_good, to_wrong))
    return worst if used else float("inf")


def _named(forms, error: float | None = None) -> str:
    """The mistakes ``forms`` in the learner's words, and the formula line to look at."""
    found = [mistakes.BY_ID[mistakes.mistake_id(form)] for form in forms]
    close = "" if error is None else f" (rel_error {error:.1e} to that mistake's output)"
    if len(found) == 1:
        return f"It looks like {found[0].id}{close}: {found[0].words}.\n  Look at: {found[0].formula}"
    return (f"It looks like two mistakes at once, {found[0].id} and {found[1].id}{close}: {found[0].words}; and "
            f"{found[1].words}.\n  Look at: {found[0].formula}   and   {found[1].formula}")


# ------------------------------------------------------------------ one exercise, all its cases
def check_exercise(name: str, namespace: dict, filenames=None) -> Result:
    """Check the function ``name`` of ``namespace`` (the workbook's or a notebook's names). ``filenames``:
    where the learner's code lives, for showing its frames (by default, where its functions were compiled)."""
    with np.errstate(all="ignore"):  # the checker's own sums, whatever np.seterr the learner's code called
        return _check_exercise(name, namespace, filenames)


def _check_exercise(name: str, namespace: dict, filenames) -> Result:
    exercise = BY_NAME[name]
    function = namespace.get(name)
    if filenames is None:
        filenames = {value.__code__.co_filename for value in namespace.values()
                     if isinstance(value, types.FunctionType)}
    if not callable(function):
        status = "not-done" if exercise.optional else "failed"
        return Result(name, status, None, f"there is no function {exercise.signature} in the workbook", exercise.optional)
    failure = None  # (case, why, mistake id or None, flattened output or None)
    value_failures = []  # (case, flattened output) of cases that returned wrong values
    for case in cases_for(name):
        outcome = run(function, arguments(name, case))
        if isinstance(outcome.error, NotImplementedError):
            return _not_done(exercise, outcome.error, filenames)
        if outcome.error is not None:
            read_only = isinstance(outcome.error, ValueError) and "read-only" in str(outcome.error)
            why = f"on {case.label} your code raised:\n{learner_frames(outcome.error, filenames)}"
            if read_only:
                return _failed(exercise, "in-place", f"{why}\n  {_named(('in-place',))}")
            failure = failure or (case, why, None, None)
            continue
        if outcome.changed:
            return _failed(exercise, "in-place", f"on {case.label}: {outcome.changed}.\n  {_named(('in-place',))}")
        mine = flatten(name, outcome.output, case)
        if isinstance(mine, str):
            failure = failure or (case, f"on {case.label} it {mine}", None, None)
            continue
        right = flatten(name, reference(name, case), case)
        problem = _compare(name, mine, right, case)
        if problem is None and outcome.warned and name in mistakes.BEHAVIOUR:
            problem = ("the values are right, but NumPy warned of an overflow or a division by zero",
                       mistakes.BEHAVIOUR[name])
        if problem is not None:
            why, mistake = problem
            failure = failure or (case, f"on {case.label}: {why}", mistake, mine)
            if mistake is None:
                value_failures.append((case, mine))
    if failure is None:
        where = core_line(name)
        extra = _numerical_note(name, namespace) if name == "backward" else ""
        compare = f" Compare with the core: {where}." if where else ""
        return Result(name, "passed", None, f"passed.{extra}{compare}", exercise.optional)
    case, why, mistake, mine = failure
    if mistake is not None:
        return _failed(exercise, mistake, f"{why}.\n  {_named((mistake,))}")
    for other_case, other in ([(case, mine)] if mine is not None else []) + value_failures:
        found = closest_mistake(name, other_case, other)
        if found is not None:
            forms, error = found
            shown = "" if other_case is case else f"\n  On {other_case.label} it runs, and its output says more."
            return _failed(exercise, mistakes.mistake_id(forms[0]),
                           f"{why}{_numerical(name, other_case, other)}{shown}\n  {_named(forms, error)}")
    return _failed(exercise, None, f"{why}{_numerical(name, case, mine)}\n  It matches none of the mistakes "
                                   "the checker knows; compare it with the formula line by line.")


def _compare(name: str, mine, right, case: Case):
    """(what is wrong, mistake id or None) of an output against the core's, or None if it is right."""
    expected = np.dtype(case.dtype)
    for (label, a), (_, b) in zip(mine, right):
        if a.shape != b.shape:
            return f"{label} has shape {a.shape}, the core's has {b.shape}", None
        if a.dtype != b.dtype and b.dtype == expected:
            if a.dtype == np.float64 and expected == np.float32:
                return f"{label} is float64 from float32 inputs", "dtype-promotion"
            return f"{label} has dtype {a.dtype}, the core's {b.dtype}", None
    error = distance(mine, right)
    if error <= (NUMERICAL_TOLERANCE if name == "numerical_gradient" else TOLERANCE[expected]):
        return None
    label, worst = _worst_item(mine, right)
    return f"{label} differs from the core's (rel_error {worst:.1e})", None


def _numerical(name: str, case: Case, mine) -> str:
    """For a gradient: how far the learner's is from the numerical gradient, in words."""
    if mine is None or isinstance(mine, str) or case.dtype is not np.float64 or case.extreme:
        return ""
    if name == "backward":
        numeric_w, numeric_b = case.numerical_gradients
        numeric = [(f"dWs[{i}]", w) for i, w in enumerate(numeric_w)] + [(f"dbs[{i}]", b)
                                                                         for i, b in enumerate(numeric_b)]
    elif name == "output_delta":
        numeric = [("the result", case.numerical_output_delta)]
    else:
        return ""
    if distance(mine, numeric) == float("inf"):
        return ""
    label, worst = _worst_item(mine, numeric)
    return f"\n  Against a numerical gradient (central differences, ε = 1e-5): {label} has rel_error {worst:.1e}"


def _numerical_note(name: str, namespace: dict) -> str:
    case = cases_for(name)[0]
    outcome = run(namespace[name], arguments(name, case))
    mine = flatten(name, outcome.output, case) if outcome.error is None else None
    if mine is None or isinstance(mine, str):
        return ""
    numeric_w, numeric_b = case.numerical_gradients
    numeric = [(f"dWs[{i}]", w) for i, w in enumerate(numeric_w)] + [(f"dbs[{i}]", b) for i, b in enumerate(numeric_b)]
    return f" Against a numerical gradient your gradients have rel_error {distance(mine, numeric):.1e} (below 1e-6 " \
           "is right)."


def _not_done(exercise, error: NotImplementedError, filenames) -> Result:
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename in filenames]
    waits = frames[-1].name if frames else exercise.name
    words = "not done yet" if waits == exercise.name or waits not in BY_NAME else \
        f"not done yet: it calls {waits}, which is not done yet"
    return Result(exercise.name, "not-done", None, words, exercise.optional)


def _failed(exercise, mistake: str | None, message: str) -> Result:
    return Result(exercise.name, "failed", mistake, message, exercise.optional)


# ------------------------------------------------------------------ the whole workbook
def check_namespace(namespace: dict, filenames=None) -> list[Result]:
    """Every exercise of ``namespace``, in order."""
    return [check_exercise(exercise.name, namespace, filenames) for exercise in EXERCISES]


def check_workbook(path: Path) -> list[Result]:
    """Every exercise of the workbook at ``path``, in order (all failed, with why, if it does not load)."""
    namespace, load_error = load_workbook(path)
    if load_error is not None:
        return [Result(exercise.name, "failed", None, load_error, exercise.optional) for exercise in EXERCISES]
    return check_namespace(namespace, {str(Path(path).resolve())})


def load_checked(path: Path) -> dict:
    """The workbook's names, once its ten exercises pass; a :class:`WorkbookError` naming the first that
    does not. The names checked are the names returned: the file is read once."""
    namespace, load_error = load_workbook(path)
    if load_error is not None:
        raise WorkbookError(f"the workbook {path} does not load: {load_error.splitlines()[-1]}")
    first = first_failure(check_namespace(namespace, {str(Path(path).resolve())}))
    if first is not None:
        mistake = f" ({first.mistake})" if first.mistake else ""
        raise WorkbookError(f"the workbook {path} does not pass its check: {first.exercise} "
                            f"{STATUS_WORDS[first.status]}{mistake}; see bptrain exercises check {Path(path).parent}")
    return namespace


def passes(name: str, namespace: dict) -> bool:
    """Whether exercise ``name`` (an optional one, say) passes in ``namespace``."""
    return check_exercise(name, namespace).status == "passed"


def notebook_check(name: str, namespace: dict) -> str:
    """What the command line says of exercise ``name``, as text for a notebook's check cell; never raises."""
    try:
        result = check_exercise(name, namespace)
    except Exception as exc:  # a check cell must let the notebook run on
        return f"{name}: the check itself could not run ({type(exc).__name__}: {exc})"
    if result.status == "not-done":
        return f"{name}: {result.message}"
    head = f"{name}: {STATUS_WORDS[result.status]}" + (f" ({result.mistake})" if result.mistake else "")
    if result.status == "failed":
        return f"{head}\n{result.message}"
    return f"{head}. {result.message.removeprefix('passed.').strip()}".rstrip()


def not_passing(names, namespace: dict) -> list[str]:
    """The exercises of ``names`` that do not pass in ``namespace`` (never raises)."""
    waiting = []
    for name in names:
        try:
            passed = check_exercise(name, namespace).status == "passed"
        except Exception:  # a notebook cell asks: it must go on
            passed = False
        if not passed:
            waiting.append(name)
    return waiting


def first_failure(results) -> Result | None:
    """The first required exercise that did not pass."""
    return next((r for r in results if r.status != "passed" and not r.optional), None)


def all_passed(results) -> bool:
    return first_failure(results) is None

