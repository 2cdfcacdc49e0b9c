"""The ``bptrain`` command's entry point: what must be set before NumPy loads, then the command group."""

from ..environment import shorten_idle_spin

shorten_idle_spin()  # OpenBLAS reads it once, when NumPy loads it: below, with the commands

from .commands import cli  # noqa: E402


def main():
    """Console-script entry point."""
    cli(prog_name="bptrain")
