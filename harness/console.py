"""The terminal: one rich console on stderr (stdout stays clean for --json), a standard progress bar, and
the ``models`` package's INFO lines (which selective-scan backend ran) shown there."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class _ConsoleHandler(logging.Handler):
    """A log record's message as one plain line on the console (the models package logs, never prints)."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(record.getMessage(), highlight=False, markup=False)


_models_log = logging.getLogger("models")
if not any(isinstance(h, _ConsoleHandler) for h in _models_log.handlers):
    _models_log.addHandler(_ConsoleHandler(level=logging.INFO))
    if _models_log.level == logging.NOTSET:  # a level the caller set stays
        _models_log.setLevel(logging.INFO)
    _models_log.propagate = False  # shown once here, not again by a handler on the root logger


class _Bar(Progress):
    """A rich Progress that knows whether another of ours is on screen: one started meanwhile (e.g. an FVD measured
    while `run`'s jobs bar shows) stays hidden, as rich before 14 allows one live display at a time and two of one
    console would interleave; its work goes on, and the lines printed above the shown bar say what it does."""

    shown = 0  # bars started and not yet stopped, in this process
    _counted = False

    def start(self) -> None:
        self.disable = self.disable or _Bar.shown > 0
        super().start()
        if not self._counted:
            self._counted = True
            _Bar.shown += 1

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self._counted:
                self._counted = False
                _Bar.shown -= 1


def progress(transient: bool = False) -> Progress:
    """A progress bar for anything that runs longer than a few seconds (hidden while another is shown)."""
    return _Bar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )
