"""One record per benchmark run, and ``results/benchmarks.md`` generated from the records.

Every ``matten-bench bench ...`` command writes one JSON record (unless ``--no-record``) into
``results/bench/`` (``--record-dir``)::

    {"benchmark": "train", "command": "matten-bench bench train ...", "date": "2026-11-30T06:10:00Z",
     "machine": harness.machine.machine_record(device), "options": {...}, "rows": [{...}, ...],
     "verdict": "one line: the target and whether it was met (or 'no target')", "details": {...}}

``matten-bench bench report`` writes ``results/benchmarks.md`` from those records: per benchmark, the newest
record first, each with its command, machine, date, verdict and its rows as a table; then the hand-written
history that came before the records (``results/benchmarks-history.md``), verbatim.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import UserError

RECORD_DIR = Path("results/bench")
HISTORY = Path("results/benchmarks-history.md")
NO_TARGET = "no target (a measurement to read, not a gate)"


def command_line() -> str:
    """The command as the user typed it (``matten-bench`` and its arguments, shell-quoted)."""
    return "matten-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def write_record(benchmark: str, device: str, options: dict[str, Any], rows: list[dict[str, Any]], *,
                 verdict: str = NO_TARGET, details: dict[str, Any] | None = None,
                 record_dir: str | Path = RECORD_DIR, command: str | None = None) -> Path:
    """Write one benchmark's record (the module docstring's format); returns its path. ``rows``: one dict per
    row of the benchmark's table (their scalar fields become the generated table's columns)."""
    from harness.io import atomic_write_json
    from harness.machine import machine_record

    now = datetime.now(timezone.utc)
    record = {"benchmark": benchmark, "command": command or command_line(), "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": machine_record(device), "options": options, "rows": rows, "verdict": verdict}
    if details:
        record["details"] = details
    slug = re.sub(r"[^a-z0-9]+", "-", str(device).lower()).strip("-")
    path = Path(record_dir) / f"{now:%Y-%m-%dT%H%M%S.%f}-{benchmark}-{slug}.json"
    try:
        atomic_write_json(path, record)
    except OSError as e:  # e.g. --record-dir names a file: one line (the benchmark's table is printed already)
        raise UserError(f"cannot write the benchmark record {path}: {e.strerror or e}") from e
    return path


def read_records(record_dir: str | Path = RECORD_DIR) -> list[dict[str, Any]]:
    """Every record in ``record_dir`` (with ``path``), newest first. A file that is not a record: UserError."""
    out = []
    for path in sorted(Path(record_dir).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: not a readable benchmark record ({e})") from e
        missing = [k for k in ("benchmark", "command", "date", "machine", "rows", "verdict")
                   if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise UserError(f"{path}: not a benchmark record (missing {', '.join(missing)})")
        out.append({**rec, "path": path})
    return sorted(out, key=lambda r: r["date"], reverse=True)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def rows_table(rows: list[dict[str, Any]]) -> str:
    """The rows' scalar fields as a Markdown table (lists and dicts stay in the JSON)."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k, v in r.items() if k not in columns and not isinstance(v, (list, dict))]
    if not columns:
        return "(no rows)"
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _machine(m: dict[str, Any]) -> str:
    if "gpu" in m:
        return f"{m['gpu']} (x{m.get('gpu_count', 1)}), torch {m.get('torch')}, CUDA {m.get('cuda')}"
    return f"CPU {m.get('cpu')}, {m.get('usable_cpus')} usable CPUs, torch {m.get('torch')}"


def render(records: list[dict[str, Any]], history: str | None, base: Path, record_dir: str | Path = RECORD_DIR) -> str:
    """``results/benchmarks.md``: the records by benchmark (newest first), then the hand-written history."""
    lines = ["# Benchmarks", "",
             f"Generated by `matten-bench bench report` from the records in `{record_dir}/` (one per benchmark run: "
             "its command, machine, date, options, rows and verdict). Ratios are measured side by side in one run; "
             "the history below the records is the hand-written account of the runs before records existed.", ""]
    for name in sorted({r["benchmark"] for r in records}):
        lines += [f"## `bench {name}`", ""]
        for r in (r for r in records if r["benchmark"] == name):
            link = Path(r["path"]).resolve()
            try:
                link = link.relative_to(base.resolve())
            except ValueError:
                pass
            lines += [f"### {r['date']} · {_machine(r['machine'])}", "",
                      f"Command: `{r['command']}`  ", f"Record: [{link}]({link})  ", f"Verdict: {r['verdict']}", "",
                      rows_table(r["rows"]), ""]
    if not records:
        lines += ["(no records yet: run a `matten-bench bench ...` command)", ""]
    if history:
        lines += ["# History (hand-written, before the records)", "", history.split("\n", 1)[1].lstrip("\n")
                  if history.startswith("# ") else history]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(record_dir: str | Path = RECORD_DIR, out: str | Path = "results/benchmarks.md",
                 history: str | Path | None = HISTORY) -> Path:
    """Write ``out`` from the records in ``record_dir`` and the history file (when it exists)."""
    from harness.io import atomic_write_text

    out = Path(out)
    text = Path(history).read_text() if history and Path(history).is_file() else None
    try:
        atomic_write_text(out, render(read_records(record_dir), text, out.parent, record_dir))
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from e
    return out
