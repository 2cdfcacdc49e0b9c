"""A sweep: one training run per setting, everything else the same (the command: :mod:`bptrain.app.commands.sweep`).

    grid      the runs: the grid of the values given to train's options, each run's name and command
    folder    what the sweep's folder holds already, what it may write there, summary.json
    cores     runs at a time and BLAS threads each, and whether they fit in memory together
    runner    the runs' processes (or a cluster's tasks), their output lines, one line per run
    cluster   the same runs as tasks of a Dask cluster (--scheduler; needs the `cluster` extra)
"""
