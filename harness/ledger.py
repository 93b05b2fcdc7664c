"""The run ledger: one JSON record per stage in a run directory.

Every stage (prepare, encode, train, sample, fvd, flops) calls :func:`start` before it
works and :func:`finish` when its outputs are on disk. A stage whose record is
``complete`` and whose configuration hashes the same is skipped (:func:`find_complete`);
a record left ``running`` by a killed job means "resume", never "done".

Record layout (``<run_dir>/records/<stage>.json``)::

    {"stage", "status": "running"|"complete", "config", "config_hash", "protocol",
     "outputs", "environment": {versions, git commit, device, host}, "started",
     "finished", "seconds"}
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json


def config_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def record_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / "records" / f"{stage}.json"


def read_record(run_dir: str | Path, stage: str) -> dict[str, Any] | None:
    """The stage's record, or None when there is none; a damaged one (cut short, edited, not an object) is a
    one-line UserError naming the file."""
    from harness.io import read_json_object

    path = record_path(run_dir, stage)
    if not path.exists():
        return None
    fix = "a stage record cut short or edited: delete it to run that stage again (or copy it again from the run it "
    fix += "came from)"
    rec = read_json_object(path, fix)
    if not isinstance(rec.get("outputs", {}), dict) or (rec.get("status") == "complete" and "outputs" not in rec):
        from harness.errors import UserError

        raise UserError(f"{path} is a stage record without an outputs object; {fix}")
    return rec


def find_complete(run_dir: str | Path, stage: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The stage's record if it finished with exactly this configuration, else None."""
    rec = read_record(run_dir, stage)
    if rec and rec.get("status") == "complete" and rec.get("config_hash") == config_hash(config):
        return rec
    return None


def plan(run_dir: str | Path, stage: str, config: dict[str, Any]) -> str:
    """What a stage should do now: "skip" (complete, same config), "resume" (left running by a
    killed job, same config: continue from its partial outputs) or "run" (no record, or the
    configuration changed: start over)."""
    rec = read_record(run_dir, stage)
    if rec is None or rec.get("config_hash") != config_hash(config):
        return "run"
    return "skip" if rec.get("status") == "complete" else "resume"


def start(run_dir: str | Path, stage: str, config: dict[str, Any], protocol: dict | None = None) -> dict:
    """Write a ``running`` record (kept if the job dies) and return it for :func:`finish`.

    Starting again over a ``running`` record with the same configuration is a resume: the
    record keeps its first start time and counts the attempt (``attempts``).
    """
    previous = read_record(run_dir, stage)
    resumed = (
        previous is not None
        and previous.get("status") == "running"
        and previous.get("config_hash") == config_hash(config)
    )
    rec = {
        "stage": stage,
        "status": "running",
        "config": config,
        "config_hash": config_hash(config),
        "protocol": protocol or {},
        "outputs": {},
        "environment": environment(),
        "started": previous["started"] if resumed else time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "attempts": int(previous.get("attempts", 1)) + 1 if resumed else 1,
        "_t0": time.time(),
    }
    atomic_write_json(record_path(run_dir, stage), {k: v for k, v in rec.items() if k != "_t0"})
    return rec


def finish(run_dir: str | Path, rec: dict[str, Any], outputs: dict[str, Any], **extra: Any) -> dict:
    """Mark the record complete with its outputs (paths relative to ``run_dir`` where possible)."""
    done = {k: v for k, v in rec.items() if k != "_t0"}
    done.update(extra)
    done["outputs"] = outputs
    done["status"] = "complete"
    done["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    done["seconds"] = round(time.time() - rec.get("_t0", time.time()), 3)
    atomic_write_json(record_path(run_dir, done["stage"]), done)
    return done


def environment() -> dict[str, Any]:
    """Versions, git commit and machine: what a reader needs to trace a number."""
    import numpy
    import torch

    from harness.machine import machine_record

    machine = machine_record("cuda" if torch.cuda.is_available() else "cpu")
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "git_commit": git_commit(),
        "device": device_name(machine),
        "machine": machine,
        # process-wide numerics a stage inherits (harness.machine.tf32 sets them for one block only)
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
    }
    return env


def device_name(machine: dict[str, Any]) -> str:
    """The short device line reports group records by, from :func:`harness.machine.machine_record`."""
    if "gpu" in machine:
        return f"cuda: {machine['gpu']} x{machine['gpu_count']}"
    return f"cpu: {machine['cpu']}, {machine['torch_threads']} threads"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")
