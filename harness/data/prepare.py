"""The prepare stage: index a local dataset copy, probe every video, write the manifest.

``prepare_dataset`` finds the videos with the dataset's layout (``layouts.py``), probes each one
(``probe.py``, with the ``check`` asked for: "quick" or "full") unless the previous manifest in ``out``
already holds it with the same size and mtime and a check at least as thorough, decides ``ok`` /
``skipped`` for each, and writes ``manifest.parquet`` and ``dataset.json`` (``manifest.py``; the check
that ran and every other file under the source, with its reason). Bad videos are skipped with their
reason, never fatal; a missing source, a wrong layout and a dataset with no usable video are
:class:`UserError`. The stage is recorded in the run ledger of ``out``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness import ledger
from harness.data import layouts, manifest, probe
from harness.errors import UserError
from harness.io import sha256_file

DATASETS = ("ucf101", "ffs", "sky", "taichi", "folder", "synthetic")  # folder: any folder of videos, unlabeled


def file_stat(path: Path, kind: str) -> tuple[int, int, str]:
    """(size, mtime_ns, fingerprint) of a video file, or of a frame folder's images together."""
    if kind == "video":
        st = path.stat()
        return st.st_size, st.st_mtime_ns, f"{st.st_size}-{st.st_mtime_ns}"
    stats = [(path / name).stat() for name in probe.list_frames(path)]
    size = sum(s.st_size for s in stats)
    mtime = max((s.st_mtime_ns for s in stats), default=0)
    return size, mtime, f"{len(stats)}-{size}-{mtime}"


def folder_sha256(path: Path) -> str:
    """sha256 over a frame folder: each image's name and content hash, in frame order."""
    import hashlib

    h = hashlib.sha256()
    for name in probe.list_frames(path):
        h.update(f"{name}:{sha256_file(path / name)}\n".encode())
    return h.hexdigest()


def previous_rows(out: Path, source: Path) -> dict[str, dict[str, Any]]:
    """Rows of the manifest already in ``out`` for the same source root, by path (empty if none)."""
    try:
        info = manifest.load_info(out)
        df = manifest.load_manifest(out)
    except UserError:
        return {}
    except Exception:  # an unreadable old manifest is simply not reused
        return {}
    if info.get("source") != str(source):
        return {}
    return {row["path"]: row for row in df.to_dict("records")}


def decide_status(row: dict[str, Any], skip_reason: str, min_frames: int, num_frames: int, interval: int) -> None:
    """Fill ``status`` and ``reason`` of a probed row."""
    reason = skip_reason or row["probe_error"]
    if not reason and row["frames"] < min_frames:
        reason = f"too short: {row['frames']} frames < {num_frames} x {interval} = {min_frames}"
    row["status"] = "skipped" if reason else "ok"
    row["reason"] = reason


def probe_entry(
    source: Path, entry: layouts.Entry, old: dict[str, Any] | None, want_sha: bool, check: str = "quick"
) -> tuple[dict[str, Any], str]:
    """The manifest row of one entry and how it was filled: "probed", "reused" (old manifest) or "none" (missing).

    An old row is reused when the file's fingerprint is unchanged and its check was at least ``check``
    (a full check answers a quick one, not the other way round)."""
    row: dict[str, Any] = dict(path=entry.path, kind=entry.kind, label=entry.label, class_name=entry.class_name,
                               split=entry.split, frames=0, fps=math.nan, width=0, height=0, size=0, mtime_ns=0,
                               fingerprint="", sha256="", probe_error="", check="", rotation=0)
    if entry.skip_reason:  # e.g. listed in a split file but missing on disk: nothing to probe
        return row, "none"
    path = source / entry.path
    row["size"], row["mtime_ns"], row["fingerprint"] = file_stat(path, entry.kind)
    thorough = (old is not None and old["check"] in probe.CHECKS
                and probe.CHECKS.index(old["check"]) >= probe.CHECKS.index(check))
    if thorough and old["fingerprint"] == row["fingerprint"] and (old["sha256"] or not want_sha):
        for k in ("frames", "fps", "width", "height", "probe_error", "sha256", "check", "rotation"):
            row[k] = old[k]
        return row, "reused"
    found = probe.probe_video(path, check) if entry.kind == "video" else probe.probe_frame_folder(path, check)
    row.update(frames=found.frames, fps=found.fps, width=found.width, height=found.height, probe_error=found.error,
               check=check, rotation=found.rotation)
    if want_sha:
        row["sha256"] = sha256_file(path) if entry.kind == "video" else folder_sha256(path)
    return row, "probed"


def count_table(df: pd.DataFrame) -> dict[str, Any]:
    """Counts for dataset.json: total, ok, skipped, usable videos per split."""
    ok = df[df["status"] == "ok"]
    return {
        "total": int(len(df)),
        "ok": int(len(ok)),
        "skipped": int((df["status"] == "skipped").sum()),
        "ok_per_split": {str(k): int(v) for k, v in ok["split"].value_counts().sort_index().items()},
    }


def prepare_dataset(
    dataset: str,
    source: str | Path | None,
    out: str | Path,
    *,
    split: str = "all",
    split_list: int = 1,
    num_frames: int = 16,
    frame_interval: int = 3,
    sha256: bool = False,
    check: str = "quick",
    synthetic_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Index ``source`` as ``dataset``, write ``manifest.parquet`` and ``dataset.json`` in ``out``, return the manifest.

    ``split`` selects "train", "test" or "all" videos (UCF101: of official split ``split_list``).
    Videos shorter than ``num_frames * frame_interval`` frames are skipped as too short. ``check`` is the
    probe (``harness.data.probe``): "quick" (header, first and last frame) or "full" (every frame). For
    ``synthetic``, ``source`` may be None: the videos are generated into ``<out>/source`` first
    (``synthetic_options`` go to :func:`harness.data.synthetic.generate_synthetic`).
    The returned frame's ``attrs["probed"]`` / ``attrs["reused"]`` say how many rows were probed.
    """
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if num_frames < 1 or frame_interval < 1:
        raise UserError("--num-frames and --frame-interval must be at least 1")
    if check not in probe.CHECKS:
        raise UserError(f"--check must be one of {', '.join(probe.CHECKS)}; got {check!r}")
    out = Path(out).resolve()
    from harness.lock import folder_lock

    with folder_lock(out, "prepare"):  # one job per prepared folder; an unwritable --out fails here, before work
        return _prepare(dataset, source, out, split=split, split_list=split_list, num_frames=num_frames,
                        frame_interval=frame_interval, sha256=sha256, check=check,
                        synthetic_options=synthetic_options, progress=progress)


def _prepare(dataset: str, source: str | Path | None, out: Path, *, split: str, split_list: int, num_frames: int,
             frame_interval: int, sha256: bool, check: str, synthetic_options: dict[str, Any] | None,
             progress: bool) -> pd.DataFrame:
    if dataset == "synthetic" and source is None:
        from harness.data.synthetic import generate_synthetic

        source = generate_synthetic(out, **(synthetic_options or {}), progress=progress)
    if source is None:
        raise UserError(f"prepare {dataset} needs --source DIR (the folder holding the dataset)")
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        problem = "does not exist" if not source.exists() else "is not a folder"
        raise UserError(f"source folder {source} {problem}")

    layout = layouts.find_entries(dataset, source, split, split_list)
    if not layout.entries:
        raise UserError(f"empty dataset: no videos found for --split {split} in {source}")
    min_frames = num_frames * frame_interval
    config = dict(dataset=dataset, source=str(source), split=split, split_list=layout.split_list,
                  num_frames=num_frames, frame_interval=frame_interval, sha256=sha256, check=check)
    rec = ledger.start(out, "prepare", config)

    old = previous_rows(out, source)
    rows, how = [], {"probed": 0, "reused": 0, "none": 0}
    from harness.console import progress as progress_bar

    with progress_bar(transient=True) as bar:
        what = "decoding every frame of" if check == "full" else "probing"
        task = bar.add_task(f"{what} {dataset}", total=len(layout.entries), visible=progress)
        for entry in layout.entries:
            row, filled = probe_entry(source, entry, old.get(entry.path), sha256, check)
            decide_status(row, entry.skip_reason, min_frames, num_frames, frame_interval)
            rows.append(row)
            how[filled] += 1
            bar.advance(task)
    df = manifest.to_frame(rows)
    info = dict(config, check_text=probe.CHECK_TEXT[check], min_frames=min_frames, classes=layout.classes,
                num_classes=len(layout.classes),
                counts=count_table(df), manifest=manifest.MANIFEST,
                other_files=[{"path": path, "reason": reason} for path, reason in layout.other])
    manifest.write_manifest(out, df, info)
    ledger.finish(out, rec, {"manifest": manifest.MANIFEST, "dataset_json": manifest.DATASET_JSON},
                  counts=info["counts"], probed=how["probed"], reused=how["reused"])
    df.attrs.update(probed=how["probed"], reused=how["reused"])
    if info["counts"]["ok"] == 0:
        raise UserError(
            f"empty dataset: none of the {len(df)} videos in {source} is usable (reasons in {out / manifest.MANIFEST})"
        )
    empty, unselected = empty_classes(layout.classes, df)
    if empty:  # a class-conditional model would be trained (and sampled) on a class it never sees
        raise UserError(
            f"{len(empty)} class(es) without a usable video: {', '.join(empty[:10])}" + (" ..." if len(empty) > 10
            else "") + f"; their videos' reasons are in {out / manifest.MANIFEST} (the manifest is written)"
        )
    if unselected and progress:
        from rich.markup import escape

        from harness.console import console

        console.print(f"[yellow]warning:[/yellow] {len(unselected)} class(es) have no video in --split {split}: "
                      f"{escape(', '.join(unselected[:10]))}" + (" ..." if len(unselected) > 10 else ""))
    return df


def empty_classes(classes: list[str], df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Of a labeled layout's classes: (those whose videos were all found unusable, those with no video in the
    selection at all, e.g. not in the chosen split's list)."""
    if not classes:
        return [], []
    listed = set(df["label"].astype(int))
    ok = set(df.loc[df["status"] == "ok", "label"].astype(int))
    empty = [name for i, name in enumerate(classes) if i in listed and i not in ok]
    return empty, [name for i, name in enumerate(classes) if i not in listed]
