"""Checkpoints are data, never code: weights_only loading, a pickle payload refused before it runs, old
checkpoints converted on request."""

import re
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


# ----------------------------------------------------------------------------- disk: what stays, and a full disk


def test_the_writer_keeps_the_newest_and_the_evaluation_steps(tmp_path):
    """keep=1 with keep_steps (a run's evaluation steps): those stay after later writes, the rest is pruned."""
    from harness.distributed import Dist

    writer = C.CheckpointWriter(tmp_path, 1, Dist(), keep_steps=(0, 2, 4))
    for step in range(6):
        writer.save(step, {"w": torch.full((3,), float(step))})
    writer.close()
    assert [C.step_of(p) for p in C.list_checkpoints(tmp_path)] == [0, 2, 4, 5]
    assert torch.equal(C.load_checkpoint(C.checkpoint_path(tmp_path, 4))["w"], torch.full((3,), 4.0))


def test_a_full_disk_is_a_one_line_error_and_the_previous_checkpoint_stays(tmp_path, monkeypatch):
    """torch.save reports ENOSPC as 'RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos …'
    raised while handling the OSError (the third mini run on the H200); the writer says what happened."""
    import errno

    from harness.distributed import Dist

    writer = C.CheckpointWriter(tmp_path, 2, Dist())
    writer.save(1, {"w": torch.zeros(250_000)})  # 1 MB
    writer.wait()
    real_save = C.atomic_save_torch

    def full_disk(path, obj):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 104575424 vs 1") from None

    monkeypatch.setattr(C, "atomic_save_torch", full_disk)
    writer.save(2, {"w": torch.ones(250_000)})
    with pytest.raises(UserError) as e:
        writer.wait()
    message = str(e.value)
    # 1 MB of weights and the RNG states (about 15 KB)
    assert "\n" not in message and re.match(r"step-0000002\.pt \(0\.001\d* GB\) could not be written: no space left",
                                           message)
    assert isinstance(e.value.__cause__, RuntimeError)  # torch's own message stays in the traceback
    assert "the run holds 1 checkpoint(s)" in message and "--keep-checkpoints 2 now" in message
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["step-0000001.pt"]
    monkeypatch.setattr(C, "atomic_save_torch", real_save)  # any other error is re-raised as it was
    monkeypatch.setattr(C, "atomic_save_torch", lambda path, obj: (_ for _ in ()).throw(PermissionError("ro")))
    writer.save(3, {"w": torch.ones(1)})
    with pytest.raises(PermissionError):
        writer.wait()


def test_state_nbytes_counts_every_tensor_once_by_hand():
    state = {"model": {"a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.float16)},
             "optimizer": {"state": {0: {"exp_avg": torch.zeros(12), "step": torch.tensor(1.0)}}},
             "rng": [torch.zeros(7, dtype=torch.uint8)], "step": 3, "name": "x"}
    assert C.state_nbytes(state) == 3 * 4 * 4 + 5 * 2 + 12 * 4 + 4 + 7


def test_train_refuses_a_run_whose_checkpoints_will_not_fit_before_its_first_step(tmp_path, monkeypatch):
    data = make_latent_cache(tmp_path / "cache")
    monkeypatch.setattr(C, "free_disk_bytes", lambda path: 1000)
    with pytest.raises(UserError, match=r"^the checkpoints need about \S+ GB more on the disk of "
                                        r".*run/checkpoints \(run .* and it has 1e-06 GB free: free space, lower "
                                        r"--keep-checkpoints"):
        T.train(config(data, tmp_path / "run", steps=4))
    assert C.list_checkpoints(tmp_path / "run") == [] and not (tmp_path / "run" / "records").exists()
    T.train(config(data, tmp_path / "run", steps=4, preflight=False))  # --no-preflight skips it
    assert [C.step_of(p) for p in C.list_checkpoints(tmp_path / "run")] == [2, 4]
    # the size the check counts against the file written: the difference is torch.save's framing, RNG states and
    # the configuration (a few KB per tensor at most)
    path = C.checkpoint_path(tmp_path / "run", 4)
    state = C.load_checkpoint(path)
    model = T.build_model_from_config(config(data, tmp_path / "run"), **state["model_args"])
    extra = path.stat().st_size - C.checkpoint_bytes(model)
    n_tensors = 4 * len(state["model"])  # model, EMA and two moments
    assert C.checkpoint_bytes(model) > 0 and 0 <= extra < 100_000 + 500 * n_tensors, (extra, n_tensors)
