"""harness.console: one progress bar on screen at a time; one started while another shows does its work hidden."""

from __future__ import annotations

from harness.console import progress


def test_a_bar_started_under_another_is_hidden_and_counts_still_add_up():
    with progress() as outer:
        job = outer.add_task("jobs", total=2)
        assert not outer.disable
        with progress() as inner:  # e.g. an FVD measured while `run`'s jobs bar shows
            assert inner.disable and not inner.live.is_started
            t = inner.add_task("I3D", total=3)
            inner.update(t, advance=3)
            assert inner.tasks[0].completed == 3
        outer.update(job, advance=2)
    with progress() as later:  # once the first has stopped, the next one shows again
        assert not later.disable


def test_a_bar_that_fails_to_start_or_stops_twice_leaves_the_next_shown(monkeypatch):
    from rich.progress import Progress

    def refuse(self):
        raise RuntimeError("no terminal")

    bar = progress()
    monkeypatch.setattr(Progress, "start", refuse)
    try:
        bar.start()
    except RuntimeError:
        pass
    monkeypatch.undo()
    bar.stop()
    bar.stop()
    with progress() as later:
        assert not later.disable
