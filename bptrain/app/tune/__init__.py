"""``bptrain tune``: a search of train's settings with Optuna (the command: :mod:`bptrain.app.commands.tune`).

    space     the TOML space: each searched setting's range or choices, checked by train's own rules
    study     the Optuna study: its storage, what it was started with, trials left running by a dead process
    trials    each trial a real ``bptrain train`` run (locally or on a Dask cluster), reported and pruned per epoch
    show      the best trial as a command and a config, the best few, the importances, the plots, summary.json

Only these modules import Optuna (the ``tune`` extra), and only once the command runs.
"""
