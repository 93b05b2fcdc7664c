"""Does a run reproduce a committed report? Every number in one report's records against the other's.

``nox -s reproduce`` writes its report where git does not track it (``runs/smoke-report``) and ends with
:func:`compare_reports` against the committed ``results/smoke``: "reproduced: N of N numbers identical", or
the numbers that differ. The numbers are the numeric leaves under each record's ``outputs`` (FVDs and their
intervals, parameter and FLOP counts, the floor), matched by record file and key; times, dates, commits,
hosts and versions are not numbers of the measurement and are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import UserError

SKIP_KEYS = {"environment", "seconds", "started", "finished", "attempts", "machine", "date", "git_commit", "host",
             "path", "real_stats"}


def record_numbers(report_dir: str | Path) -> dict[str, float]:
    """{"<record file>:<key path>": number} for every number under ``outputs`` of ``report_dir/records/**``."""
    root = Path(report_dir) / "records"
    if not root.is_dir():
        raise UserError(f"{report_dir}: no records/ folder (a report written by matten-bench run)")
    out: dict[str, float] = {}
    for path in sorted(root.rglob("*.json")):
        rec = json.loads(path.read_text())
        _numbers(rec.get("outputs", {}), f"{path.relative_to(root)}:outputs", out)
    return out


def _numbers(obj: Any, key: str, out: dict[str, float]) -> None:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        out[key] = float(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k not in SKIP_KEYS:
                _numbers(v, f"{key}.{k}", out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _numbers(v, f"{key}[{i}]", out)


def compare_reports(committed: str | Path, new: str | Path) -> tuple[int, int, list[str]]:
    """(identical, total, differences as lines) between two reports' record numbers; a number present in one
    report only counts as a difference."""
    a, b = record_numbers(committed), record_numbers(new)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            diffs.append(f"{key}: {a[key]!r} -> (missing)")
        elif key not in a:
            diffs.append(f"{key}: (missing) -> {b[key]!r}")
        elif a[key] != b[key]:
            diffs.append(f"{key}: {a[key]!r} -> {b[key]!r} ({(b[key] - a[key]) / abs(a[key] or 1):+.2e} relative)")
    total = len(set(a) | set(b))
    return total - len(diffs), total, diffs


def detector_files(report_dir: str | Path) -> set[str]:
    """The sha256s of the detector files a report's FVD records name (``outputs.result.detector.sha256``)."""
    out = set()
    for path in sorted((Path(report_dir) / "records").rglob("*.json")):
        detector = json.loads(path.read_text()).get("outputs", {}).get("result", {}).get("detector", {})
        if isinstance(detector, dict) and detector.get("sha256"):
            out.add(detector["sha256"])
    return out
