"""`matten-bench`: a thin Typer layer over the stage modules; each module below registers its commands.

Command functions parse options and call library functions that tests call directly.
A :class:`harness.errors.UserError`, or a model option the ``models`` package refuses
(:class:`models.errors.ModelConfigError`), becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from harness.cli import bench_train as _bench_train  # noqa: F401  (registers `bench train`)
from harness.cli import data as _data  # noqa: F401  (registers `prepare`, `bench data`)
from harness.cli import doctor  # noqa: F401  (registers `doctor`)
from harness.cli import flops as _flops  # noqa: F401  (registers `flops`)
from harness.cli import fvd as _fvd  # noqa: F401  (registers `fvd`, `i3d fetch`, `bench fvd`)
from harness.cli import models as _models  # noqa: F401  (registers `models`, `bench scan|scan-check|models|mixer|gpu`)
from harness.cli import run as _run  # noqa: F401  (registers `run`)
from harness.cli import train as _train  # noqa: F401  (registers `encode`, `train`, `sample`)
from harness.cli.app import app
from harness.console import console
from harness.errors import UserError
from models.errors import ModelConfigError


def _click_exceptions():
    """click's exception classes as typer raises them (recent typer vendors click as ``typer._click``)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def main() -> None:
    errors = _click_exceptions()
    try:
        code = app(standalone_mode=False)  # click's usage errors come here too, to be printed on one line
    except (UserError, ModelConfigError) as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)  # paths literally
        sys.exit(2)
    except errors.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `matten-bench` or a group alone: its help
            console.print(e.ctx.get_help(), highlight=False, markup=False)
            sys.exit(0)
        # a bad option, type or value: one line, and where the command's options are listed; exit 2
        sub = ""
        if e.ctx is not None:
            sub = e.ctx.command_path[len(e.ctx.find_root().command_path) :].strip()
        where = f" (matten-bench {sub + ' ' if sub else ''}--help)"
        console.print(f"[red]error:[/red] {escape(e.format_message())}{where}", soft_wrap=True, highlight=False)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):  # Ctrl-C
        console.print("[red]error:[/red] interrupted", highlight=False)
        sys.exit(130)
    sys.exit(code or 0)
