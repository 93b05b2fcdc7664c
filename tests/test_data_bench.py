"""`bench data`: both loaders give the same pixels, the paired speed-ups are what the table says, bad input."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from harness.bench import data as bench
from harness.errors import UserError


def test_reference_reads_the_same_frames_as_ours(tmp_path):
    prepared = bench.make_ucf_like(tmp_path, 2)
    ours, ref = bench.ClipDataset(prepared, size=64), bench.WholeVideoClipDataset(prepared, size=64)
    for i in range(len(ours)):
        indices, _ = ours.sample_plan(i)
        (a, _), (b, _) = ours.read_frames(i, indices), ref.read_frames(i, indices)
        assert a.shape == b.shape == (16, 240, 320, 3)
        assert np.array_equal(a.numpy(), b)


def test_rows_and_paired_speedups(tmp_path, monkeypatch):
    make = bench.make_ucf_like
    monkeypatch.setattr(bench, "make_ucf_like", lambda workdir, videos: make(workdir, videos, frames=(50, 60)))
    rows = bench.run_data_bench(videos=2, clips=2, repeats=3, workers=0, size=32, workdir=tmp_path)
    expected = [(name, mode) for mode in bench.MODES for name in bench.LOADERS]
    assert [(r["loader"], r["output"]) for r in rows] == expected
    for ours, ref in zip(rows[::2], rows[1::2], strict=True):
        assert ours["same_pixels"] is (None if ours["output"] == "decode only" else True)
        assert len(ours["runs"]) == len(ours["cpu_runs"]) == 3
        ratios = [a / b for a, b in zip(ours["runs"], ref["runs"], strict=True)]  # repeat k against repeat k
        assert ours["speedups"] == pytest.approx(ratios)
        assert ours["speedup"] == pytest.approx(statistics.median(ratios))
        assert ours["cpu_speedup"] == pytest.approx(
            statistics.median(b / a for a, b in zip(ours["cpu_runs"], ref["cpu_runs"], strict=True)))
        assert ref["speedup"] == 1.0 and ref["cpu_speedup"] == 1.0
    line = bench.verdict(rows)
    target = next(r for r in rows if r["loader"] == bench.LOADERS[0] and r["output"] == bench.TARGET_MODE)
    assert f"median {target['speedup']:.2f}x" in line
    assert (": met:" in line) == (target["speedup"] >= bench.TARGET)


def test_verdict_reads_the_trainers_row():
    rows = [{"loader": bench.LOADERS[0], "output": "float32 clips", "speedup": 9.0, "speedups": [9.0]},
            {"loader": bench.LOADERS[0], "output": bench.TARGET_MODE, "speedup": 4.9, "speedups": [4.5, 4.9, 5.6]}]
    assert bench.verdict(rows) == ("target >= 5x (wall, uint8 clips, the trainer's loader): not met: median 4.90x, "
                                   "repeats 4.50x to 5.60x")
    rows[1].update(speedup=5.0)
    assert ": met: median 5.00x" in bench.verdict(rows)


@pytest.mark.parametrize("option,least", [("videos", 1), ("clips", 1), ("repeats", 1), ("size", 1), ("workers", 0)])
def test_bad_counts_are_user_errors(option, least):
    with pytest.raises(UserError, match=f"--{option} must be at least {least}; got {least - 1}"):
        bench.run_data_bench(**{option: least - 1})
