"""The ``bptrain`` command: one module per command group, and the group that is the command line's edge.

Every user error becomes one line on stderr and a non-zero exit code: the library raises
:class:`~bptrain.core.errors.BptrainError` subclasses, and :class:`BptrainGroup` turns them into click
errors, so nobody sees a traceback for a typo.
"""

from __future__ import annotations

import sys

import click

from ... import __version__
from ...core.errors import BptrainError, SettingError
from ..options import OTHER_NAMES
from ..printable import one_line
from .sweep import sweep_command
from .evaluate import eval_command, predict_command
from .exercises import exercises_command
from .explain import explain_command
from .export import export_command
from .plot import compare_command, plot_command
from .serve import serve_command
from .tools import bench_command, download_command, gradcheck_command, info_command
from .train import train_command
from .tune import tune_command

_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


def _suggest_our_name(exc: click.UsageError) -> None:
    """An unknown option another trainer spells that way (``--learning-rate``): suggest ours (``--lr``), when
    the command has it, instead of click's nearest spelling."""
    if not isinstance(exc, click.NoSuchOption) or exc.ctx is None:
        return
    ours = OTHER_NAMES.get(exc.option_name.split("=", 1)[0].lower())
    if ours and any(ours in param.opts for param in exc.ctx.command.params):
        exc.possibilities = [ours]


class BptrainGroup(click.Group):
    """A click group that reports every user error as one clean line on stderr.

    This is the command line's edge: the library's errors (BptrainError) exit with 1, settings that do not
    go together (SettingError) and click's usage errors with 2; click's usual "Usage: ... Try --help"
    preamble is folded into one line.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # plain `bptrain`: show the help, as click does
            click.echo(exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            _suggest_our_name(exc)
            command = getattr(exc, "command_path", None) or (exc.ctx.command_path if exc.ctx is not None
                                                             else (prog_name or "bptrain"))
            click.echo(f"Error: {exc.format_message()} (see '{command} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SettingError as exc:  # one line each, whatever names they quote (printable.one_line)
            error = click.UsageError(one_line(str(exc)))
            error.command_path = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
            raise error from None
        except BptrainError as exc:
            raise click.ClickException(one_line(str(exc))) from None
        except MemoryError as exc:  # training's own advice is given by `train`; elsewhere just the fact
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise click.ClickException(f"out of memory{f' ({detail})' if detail else ''}") from None


@click.group(cls=BptrainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bptrain")
def cli():
    """Train and evaluate an MLP (sigmoid hidden units by default) on MNIST with backpropagation written out in NumPy."""


for command in (train_command, eval_command, predict_command, explain_command, exercises_command, serve_command,
                plot_command, compare_command, sweep_command, tune_command, export_command, info_command,
                gradcheck_command, bench_command, download_command):
    cli.add_command(command)

