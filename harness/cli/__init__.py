"""`matten-bench`: a thin Typer layer over the stage modules; each module below registers its commands.

Command functions parse options and call library functions that tests call directly.
A :class:`harness.errors.UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

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


def main() -> None:
    try:
        app()
    except UserError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)  # paths literally
        sys.exit(2)
