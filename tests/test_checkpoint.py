"""Checkpoints are data, never code: weights_only loading, a pickle payload refused before it runs, old
checkpoints converted on request."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import checkpoint as C
from harness import train as T
from harness.errors import UserError
from tests.test_train import config, make_latent_cache


class Payload:
    """Unpickling this creates ``marker``: the proof that a load ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "checkpoints" / "step-0000001.pt"
    evil.parent.mkdir()
    torch.save({"model": {}, "step": 1, "x": Payload(marker)}, evil)
    with pytest.raises(UserError, match="loading it could run code, so it is refused"):
        C.load_checkpoint(evil)
    assert not marker.exists()
    # through the commands a user types: one line, exit 2, nothing ran
    for args in (["sample", "--checkpoint", str(evil), "--out", str(tmp_path / "s"), "--device", "cpu"],):
        out = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    with pytest.raises(UserError, match="not a readable checkpoint"):
        C.load_checkpoint(tmp_path / "missing.pt")


def test_rng_states_are_plain_and_restore_exactly(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    import random

    random.seed(3)
    np.random.standard_normal()  # leave a cached Gaussian in numpy's state
    state = C.rng_state()
    torch.save({"rng": [state]}, tmp_path / "r.pt")
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)["rng"][0]  # plain enough for weights_only
    want = (torch.rand(3), np.random.standard_normal(4), random.random())
    C.set_rng_state(loaded)
    got = (torch.rand(3), np.random.standard_normal(4), random.random())
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]


def test_an_old_checkpoint_is_refused_with_the_fix_then_converted(tmp_path):
    data = make_latent_cache(tmp_path / "data")
    run = tmp_path / "run"
    T.train(config(data, run, steps=2, ckpt_every=1))
    path = T.latest_checkpoint(run)
    state = torch.load(path, weights_only=True)
    # as matten-bench wrote it before: numpy's and Python's states as the objects get_state() returns
    for r in state["rng"]:
        n, p = r["numpy"], r["python"]
        r["numpy"] = (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        r["python"] = (p["version"], tuple(p["state"].tolist()), p["gauss_next"])
    torch.save(state, path)
    with pytest.raises(UserError, match=r"matten-bench checkpoint convert .*step-0000002.pt --trust"):
        C.load_checkpoint(path)
    refused = subprocess.run([sys.executable, "-m", "harness.cli", "checkpoint", "convert", str(path)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "pass --trust" in refused.stderr
    done = subprocess.run([sys.executable, "-m", "harness.cli", "checkpoint", "convert", str(path), "--trust"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    T.train(config(data, run, steps=3, ckpt_every=1), resume=True)  # the converted checkpoint resumes
    assert C.load_checkpoint(T.latest_checkpoint(run))["step"] == 3


def test_junk_and_truncated_files_are_not_called_payloads(tmp_path):
    """A file that is not a checkpoint at all gets "not a readable checkpoint", not the advice to convert it."""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is a text file, not a checkpoint\n" * 10)
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(3)}, "step": 1}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:40])
    for bad in (junk, cut):
        with pytest.raises(UserError, match="not a readable checkpoint") as e:
            C.load_checkpoint(bad)
        assert "convert" not in str(e.value)
    assert torch.equal(C.load_checkpoint(good)["model"]["w"], torch.ones(3))
    # convert --trust on junk: one line, exit 2
    out = subprocess.run([sys.executable, "-m", "harness.cli", "checkpoint", "convert", str(junk), "--trust"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert "not a readable checkpoint" in out.stderr and len(out.stderr.strip().splitlines()) == 1
