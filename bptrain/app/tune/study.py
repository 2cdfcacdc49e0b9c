"""The Optuna study of ``bptrain tune``: its storage, its definition, and trials left running by a dead process.

A study is kept in an SQL database by name (any SQLAlchemy URL; by default an SQLite file beside the
study's runs). What makes its trials comparable (the space, train's settings that are not searched,
the pruner and the sampler's seed) is recorded in the study's user attributes when it is created; a
later command on the same study must ask for the same, or is refused with the way to start another.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ... import __version__
from ...core.errors import BptrainError

#: Seconds between a running trial's heartbeats in the storage, and after which one without is stale:
#: a trial whose process died on another machine is failed by the next command on the study.
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 120
#: How long an SQLite writer waits for another process's lock before giving up (concurrent studies).
SQLITE_BUSY_SECONDS = 60
CREATION_ATTEMPTS = 10

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: What must be the same for a command to add trials to a study (the keys of its ``definition``).
COMPARED = ("space", "settings", "pruner", "sampler_seed")
DEFINITION_KEY = "bptrain_definition"
OWNER_KEY = "bptrain_owner"
REASON_KEY = "failed_because"
PRUNERS = ("median", "halving", "hyperband", "none")


@contextmanager
def quiet_optuna():
    """Without Optuna's warnings that heartbeats are "experimental" and meant for Study.optimize: the
    study's trials are run by ask and tell, and their heartbeats recorded by hand (trials.Tuner)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


class StudyError(BptrainError):
    """The study cannot be opened or used as asked."""


def check_study_name(name: str) -> str:
    if not STUDY_NAME.match(name):
        raise StudyError(f"study name {name!r}: use letters, digits, '.', '_' and '-' (at most 100, the first a "
                         "letter or digit); it names the study's folder and database")
    return name


def default_storage(out_dir: Path, name: str) -> str:
    """``sqlite:////abs/OUT_DIR/NAME.db``: absolute, so the study is the same one from any directory."""
    return "sqlite:///" + str((Path(out_dir) / f"{name}.db").absolute())


def shown_url(url: str) -> str:
    """The URL without its password, to print and record."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The storage at ``url``, its tables made if it is new. Two commands making the same new database at once
    race in Optuna's creation of its tables (one finds a table the other just made): the loser tries again."""
    kwargs = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}} if url.startswith("sqlite:") else {}
    for attempt in range(CREATION_ATTEMPTS):
        try:
            with quiet_optuna():
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                                  grace_period=GRACE_SECONDS)
        except Exception as exc:  # a bad URL, a missing driver, a file that is no database, a server that refuses
            text = " ".join(str(exc).split()).split(" (Background on this error")[0] or type(exc).__name__
            if attempt + 1 < CREATION_ATTEMPTS and ("already exists" in text or "alembic_version" in text):
                time.sleep(0.2 + random.random())
                continue
            raise StudyError(f"cannot open the storage {shown_url(url)}: {text[:300]}") from None


def make_pruner(name: str, epochs: int):
    if name == "median":  # a trial is compared epoch by epoch once three trials have finished
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


def make_sampler(seed: int, trial_number: int):
    """TPE seeded per trial from the study's seed and the trial's number: the numbers are unique in the
    storage, so two commands on one study never draw the same random start, and each draw is reproducible
    from what the study records. ``constant_liar``: trials running at once are steered apart."""
    return optuna.samplers.TPESampler(seed=(seed * 1_000_003 + trial_number) % 2**32, constant_liar=True)


def open_study(storage, name: str, definition: dict):
    """Load the study ``name``, or create it with ``definition``; refuse one defined otherwise."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    except Exception as exc:
        text = " ".join(str(exc).split()).split(" (Background on this error")[0] or type(exc).__name__
        raise StudyError(f"cannot open study {name!r}: {text[:300]}") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise StudyError(f"study {name!r} minimises; bptrain tune maximises the validation accuracy: name another "
                         "study (--study)")
    recorded = study.user_attrs.get(DEFINITION_KEY)
    if recorded is None:
        study.set_user_attr(DEFINITION_KEY, definition)
        recorded = optuna.load_study(study_name=name, storage=storage).user_attrs.get(DEFINITION_KEY)
    if not isinstance(recorded, dict):
        raise StudyError(f"study {name!r} was not made by bptrain tune; name another study (--study)")
    for key in COMPARED:
        if recorded.get(key) != definition[key]:
            raise StudyError(f"study {name!r} was started with another {key.replace('_', ' ')} "
                             f"({_difference(key, recorded.get(key), definition[key])}); run it with the same, "
                             f"or start another with --study {name}-2")
    return study


def load_study(storage, name: str, url: str):
    """The existing study ``name`` (for --show)."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyError(f"no study {name!r} in {shown_url(url)}") from None


def _difference(key: str, recorded, wanted) -> str:
    if key in ("space", "settings") and isinstance(recorded, str):
        try:
            old, new = json.loads(recorded), json.loads(wanted)
        except ValueError:
            return "recorded differently"
        for setting in sorted(set(old) | set(new)):
            if old.get(setting) != new.get(setting):
                return f"{setting}: {_short(old.get(setting, 'not given'))}, now {_short(new.get(setting, 'not given'))}"
    return f"{recorded}, now {wanted}"


def _short(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def definition(space_text: str, settings: dict, pruner: str, sampler_seed: int, out_dir: Path) -> dict:
    return {"space": space_text, "settings": json.dumps(settings, sort_keys=True, default=str),
            "pruner": pruner, "sampler_seed": sampler_seed, "sampler": "TPESampler(constant_liar)",
            "out_dir": str(Path(out_dir).absolute()), "bptrain_version": __version__}


# --------------------------------------------------------------------- trials left running
def _process_start(pid: int):
    """When process ``pid`` started (Linux's clock ticks), None if there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner() -> dict:
    """This process, as recorded in each trial it runs."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _alive(record) -> bool | None:
    """Whether the process that recorded ``record`` still runs; None when it ran on another machine."""
    if not isinstance(record, dict) or record.get("host") != socket.gethostname():
        return None
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    start = _process_start(pid)
    if record.get("start") is not None:
        return start == record["start"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def fail_abandoned(study, storage, finished_value) -> tuple[list[int], list[int]]:
    """Close the trials left running by a process that is gone: on this machine at once (its process is not
    there), elsewhere once their heartbeat is older than GRACE_SECONDS. A trial whose run finished before its
    process died (``finished_value(trial)``: its best validation accuracy by its files, else None) is
    recorded as complete; the others as failed. (The numbers failed, the numbers completed.)"""
    completed = []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        if _alive(trial.user_attrs.get(OWNER_KEY)) is False:
            value = finished_value(trial)
            try:
                if value is not None:
                    storage.set_trial_user_attr(trial._trial_id, "status", "finished")
                    if storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [value]):
                        completed.append(trial.number)
                    continue
                storage.set_trial_user_attr(trial._trial_id, REASON_KEY,
                                            "its bptrain tune process ended before the trial did (killed?)")
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another command on the study got there first
    with quiet_optuna():
        optuna.storages.fail_stale_trials(study)
    still = {trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    failed = {trial.number for trial in running if trial.number not in still} - set(completed)
    return sorted(failed), completed
