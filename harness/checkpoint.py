"""Training checkpoints: ``<run>/checkpoints/step-NNNNNNN.pt``, written atomically by rank 0.

A checkpoint holds what an uninterrupted run would still have in memory: model, EMA (and the
number of updates its schedule has seen), optimizer, the running sums of the metrics' current
logging interval, the data position, every rank's RNG states, the configuration and the model's
constructor arguments (``model_args``, enough to rebuild it for sampling).
"""

from __future__ import annotations

import errno
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.distributed import Dist, all_gather_objects, barrier
from harness.errors import UserError
from harness.io import atomic_save_torch


def rng_state() -> dict[str, Any]:
    """This process's global RNG states as tensors and plain Python values (a checkpoint loads with
    ``weights_only=True``, which admits nothing else): torch (CPU), every CUDA device's, numpy's, Python's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def set_rng_state(s: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = s["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """A checkpoint's size in bytes, less a few MB (RNG states, configuration): the model's and the EMA's state
    (weights and buffers, as stored) and AdamW's two fp32 moments of each trainable parameter. Works on a model on
    the meta device. Measured: Matten-S/8 (41.6M parameters) writes 0.67 GB, Matten-B/8 (164.6M) 2.6 GB
    (results/mini/README.md): 16 bytes a parameter."""
    moments = sum(2 * p.numel() * 4 for p in model.parameters() if p.requires_grad)
    return 2 * state_nbytes(model.state_dict()) + moments


def gb(nbytes: float) -> str:
    """Bytes as decimal gigabytes to three significant digits ('0.67 GB', '0.000415 GB')."""
    return f"{nbytes / 1e9:.3g} GB"


def free_disk_bytes(path: str | Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def _no_space(e: BaseException | None) -> bool:
    """Whether ``e`` or an exception it was raised from is a full disk or quota (ENOSPC, EDQUOT; ``torch.save``
    reports one as a RuntimeError 'unexpected pos …' raised while handling the OSError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


def state_nbytes(obj: Any) -> int:
    """Bytes of the tensors in a nested state (dicts, lists, tuples): what ``torch.save`` writes, less a few KB."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_nbytes(v) for v in obj)
    return 0


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:07d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first (zero-padded step numbers sort as text)."""
    return sorted(checkpoint_dir(run_dir).glob("step-*.pt"))


def step_of(path: Path) -> int:
    """The step of ``step-NNNNNNN.pt``."""
    return int(path.stem.removeprefix("step-"))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded with ``weights_only=True``: tensors, numbers, strings, lists and dicts
    only, so a checkpoint from elsewhere cannot run code (a pickle's ``__reduce__`` is refused before it
    runs). Raises UserError for anything else: a checkpoint written before matten-bench stored its RNG
    states as tensors (convert it once with ``matten-bench checkpoint convert``) or a file that is not ours."""
    import pickle
    import re

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch's message carries terminal colour codes
        if "GLOBAL" in text or "global" in text.split("WeightsUnpickler error:")[-1]:
            # an object to build by calling code: an old checkpoint of ours (numpy RNG states) or a payload
            raise UserError(
                f"{path} holds more than tensors and plain values (it names a Python object to build); loading it "
                "could run code, so it is refused. A checkpoint of an older matten-bench: `matten-bench checkpoint "
                f"convert {path} --trust` rewrites it safely (only for files you made yourself)"
            ) from e
        raise UserError(f"{path} is not a readable checkpoint (not a torch file, or damaged)") from e
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, IndexError) as e:  # not torch, cut short
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:160]})") from e


def convert_legacy_checkpoint(path: str | Path, out: str | Path | None = None) -> Path:
    """Rewrite a checkpoint of an older matten-bench (numpy and Python RNG states pickled as objects) in the
    ``weights_only`` format. It unpickles the file fully: call it only on files you made yourself."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # trusted by the caller (--trust)
    except Exception as e:  # any unpickling failure: not a checkpoint (or damaged)
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:160]})") from e
    if not isinstance(state, dict) or "model" not in state or not isinstance(state.get("rng"), list):
        raise UserError(f"{path} is not a matten-bench training checkpoint (no model / rng entries)")
    try:
        state["rng"] = [_plain_rng(r) for r in state["rng"]]
    except (TypeError, ValueError, KeyError) as e:
        raise UserError(f"{path}: its RNG states are not what matten-bench wrote ({e})") from e
    target = Path(out) if out else path
    try:
        atomic_save_torch(target, state)
    except OSError as e:
        raise UserError(f"cannot write {target}: {e.strerror or e}") from e
    load_checkpoint(target)  # the rewritten file loads safely
    return target


def _plain_rng(r: dict[str, Any]) -> dict[str, Any]:
    """An old checkpoint's RNG entry in :func:`rng_state`'s plain form."""
    out = dict(r)
    if isinstance(r.get("numpy"), tuple):
        kind, keys, pos, has_gauss, cached = r["numpy"]
        out["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                        "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    if isinstance(r.get("python"), tuple):
        version, internal, gauss_next = r["python"]
        out["python"] = {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                         "gauss_next": gauss_next}
    return out


class HostBuffers:
    """Host copies of a state's tensors in buffers allocated once and refilled at each checkpoint: pinned
    for CUDA tensors, so the device-to-host copy runs at the link's speed (measured on an H200: 11.6 s for
    Latte-XL's 10.8 GB of weights, EMA and AdamW state through pageable memory; results/benchmarks.md)."""

    def __init__(self) -> None:
        self._bufs: dict[tuple, torch.Tensor] = {}

    def copy(self, obj: Any, key: tuple = ()) -> Any:
        """``obj`` (nested dicts, lists, tuples) with every tensor replaced by its host copy; waits for the
        copies to land before returning."""
        out = self._copy(obj, key)
        if torch.cuda.is_available() and any(b.is_pinned() for b in self._bufs.values()):
            torch.cuda.synchronize()
        return out

    def _copy(self, obj: Any, key: tuple) -> Any:
        if isinstance(obj, torch.Tensor):
            buf = self._bufs.get(key)
            if buf is None or buf.shape != obj.shape or buf.dtype != obj.dtype:
                buf = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=obj.is_cuda)
                self._bufs[key] = buf
            return buf.copy_(obj.detach(), non_blocking=obj.is_cuda)
        if isinstance(obj, dict):
            return {k: self._copy(v, (*key, k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._copy(v, (*key, i)) for i, v in enumerate(obj))
        return obj


class CheckpointWriter:
    """Writes checkpoints while training goes on.

    ``save`` gathers every rank's RNG states (a collective: every rank calls it), and rank 0 copies the
    state to host buffers (the step waits for that copy only: the weights move on after it), then a
    background thread serialises it into ``step-<step>.pt`` atomically and prunes all but the newest
    ``keep``, except those at ``keep_steps`` (a run's evaluation steps, sampled again when their sampler
    changes), which stay. One write is in flight at a time: the next ``save`` and ``close`` wait for it and
    re-raise its error; a full disk is re-raised as a one-line UserError naming the sizes. A job killed
    mid-write leaves the previous checkpoints intact (the write is atomic).
    """

    def __init__(self, run_dir: str | Path, keep: int, d: Dist, keep_steps: tuple[int, ...] = ()):
        self.run_dir, self.keep, self.d, self.keep_steps = Path(run_dir), keep, d, frozenset(keep_steps)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._host = HostBuffers()  # reused: the next save waits for this write before refilling them
        self.write_seconds: list[float] = []  # serialisation + disk, per checkpoint
        self.stall_seconds: list[float] = []  # what the training loop waited, per checkpoint
        if d.main:  # a job killed mid-write left its temporary file (never a checkpoint): remove it
            for stale in checkpoint_dir(run_dir).glob(".step-*.tmp"):
                stale.unlink()

    def save(self, step: int, state: dict[str, Any]) -> Path:
        t0 = time.perf_counter()
        states = all_gather_objects(rng_state(), self.d)
        path = checkpoint_path(self.run_dir, step)
        if self.d.main:
            self.wait()
            snapshot = {**self._host.copy(state), "step": step, "rng": states}
            self._thread = threading.Thread(target=self._write, args=(path, snapshot), name="checkpoint-writer")
            self._thread.start()
        barrier(self.d)
        self.stall_seconds.append(time.perf_counter() - t0)
        return path

    def _write(self, path: Path, snapshot: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        try:
            atomic_save_torch(path, snapshot)
            for old in list_checkpoints(self.run_dir)[: -self.keep]:
                if step_of(old) not in self.keep_steps:
                    old.unlink()
        except BaseException as e:  # re-raised in the training thread by wait()
            self._error = e
            if _no_space(e):
                try:
                    self._error = self._disk_full(path, snapshot)
                    self._error.__cause__ = e  # torch's message and the OSError stay in the traceback
                except Exception:  # the message could not be made (a file gone meanwhile): the error as raised
                    pass
        self.write_seconds.append(time.perf_counter() - t0)

    def _disk_full(self, path: Path, snapshot: dict[str, Any]) -> UserError:
        held = list_checkpoints(self.run_dir)
        return UserError(
            f"{path.name} ({gb(state_nbytes(snapshot))}) could not be written: no space left on the disk of "
            f"{path.parent} ({gb(free_disk_bytes(path.parent))} free; the run holds {len(held)} checkpoint(s), "
            f"{gb(sum(p.stat().st_size for p in held))}). The checkpoints written before are intact, and "
            "train --resume (or the same `run` command) continues from the newest: free space, keep fewer "
            f"(--keep-checkpoints {self.keep} now) or move --run-dir to a larger disk"
        )

    def wait(self) -> None:
        """Block until the write in flight (if any) is on disk; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    close = wait
