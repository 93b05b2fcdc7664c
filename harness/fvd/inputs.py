"""What ``fvd --real A --fake B`` reads: each side resolved to what the protocol measures.

Either side may be

* a **folder of videos** (mp4, avi, webm, mkv, mov, gif) and/or frame folders, as found below it: prepared once
  (``harness.data.prepare``, dataset ``folder``, the quick check) into the cache, so a rerun probes only what
  changed; what it left out (unreadable, too short, not a video) is in the prepared ``dataset.json`` and
  counted in the record;
* a **prepared dataset** (``matten-bench prepare``: ``manifest.parquet``);
* a **samples folder** (``clips/clips-*.npy``, what ``matten-bench sample`` writes) or one uint8
  (N, T, H, W, 3) ``.npy`` — generated side only;
* a **statistics file** (``.npz`` with its ``.json``) — real side only.

The real side's clips are ``eval_clips``' (windows from (seed, pass, video), ``--frame-interval``, no flips,
short-side resize and centre crop to ``--size``). A generated side given as videos or a prepared dataset is
read by the same reader with the same resize and crop, at ``--fake-frame-interval`` (default 1: a generator's
frames are consecutive), and written once as clip shards into the cache; from there it is a samples folder.

When a folder holds fewer distinct clips than ``--num`` asks for (a video of L frames holds
``L - window`` windows, Latte's sampling), the default N of 2048 comes down to what both sides hold, with a
warning; an ``--num`` given explicitly is refused instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import FVDConfig
from harness.errors import UserError

PROTOCOL_NUM = 2048  # StyleGAN-V's clip count on each side


def kind_of(path: str | Path) -> str:
    """"stats" | "array" | "samples" | "prepared" | "videos" for an ``fvd`` input; UserError for anything else."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".npz":
            return "stats"
        if path.suffix == ".npy":
            return "array"
        raise UserError(f"{path}: expected a folder (videos, a prepared dataset, samples) or a .npz / .npy file")
    if not path.is_dir():
        raise UserError(f"{path} does not exist")
    if (path / "manifest.parquet").is_file():
        return "prepared"
    if (path / "clips").is_dir() and any((path / "clips").glob("clips-*.npy")):
        return "samples"
    return "videos"  # prepare says so, in one line, when there are none


def _cache(name: str) -> Path:
    from harness.paths import cache_dir

    return cache_dir() / "fvd-inputs" / name


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_folder(folder: Path, num_frames: int, frame_interval: int) -> Path:
    """A folder of videos prepared into the cache (reused, and re-probed only where files changed)."""
    from harness.data.prepare import prepare_dataset

    out = _cache(f"prepared-{_digest(str(folder.resolve()))}")
    prepare_dataset("folder", folder, out, num_frames=num_frames, frame_interval=frame_interval)
    return out


def left_out_files(prepared: Path, meta: dict[str, Any]) -> list[dict[str, str]]:
    """Every file of a prepared folder that gives no clips, ``{"path", "reason"}``: the manifest's skipped
    videos (unreadable, empty, too short), then the other files (``dataset.json``'s ``other_files``)."""
    from harness.data.manifest import load_manifest

    rows = load_manifest(prepared)
    skipped = rows[rows["status"] == "skipped"]
    return ([{"path": str(p), "reason": str(r)} for p, r in zip(skipped["path"], skipped["reason"], strict=True)]
            + [{"path": str(f["path"]), "reason": str(f["reason"])} for f in meta.get("other_files", [])])


def distinct_clips(prepared: Path, num_frames: int, frame_interval: int) -> int:
    """How many different clips the usable videos hold: ``max(0, L − window − 1) + 1`` per video long enough
    (``harness.data.clips.window_indices``' choices of start), summed."""
    from harness.data.manifest import load_manifest

    window = num_frames * frame_interval
    totals = load_manifest(prepared, ok_only=True)["frames"].astype(int).to_numpy()
    fits = totals[totals >= window]
    return int((np.maximum(0, fits - window - 1) + 1).sum())


def clips_from_prepared(prepared: Path, num: int, num_frames: int, frame_interval: int, size: int, seed: int,
                        what: str) -> Path:
    """``num`` clips of a prepared dataset as a samples folder in the cache (written once; reused when the
    dataset, the clip settings and the seed are the same)."""
    from harness.clip_shards import write_shard
    from harness.data.clips import eval_clips
    from harness.data.manifest import manifest_fingerprint
    from harness.lock import entry_lock

    key = {"fingerprint": manifest_fingerprint(prepared), "num": num, "num_frames": num_frames,
           "frame_interval": frame_interval, "size": size, "seed": seed}
    out = _cache(f"clips-{_digest(key)}")
    done = out / "complete.json"
    if done.is_file() and json.loads(done.read_text()) == key:
        return out
    out.mkdir(parents=True, exist_ok=True)
    with entry_lock(done, f"FVD {what} clips"):
        for k, batch in enumerate(eval_clips(prepared, num, seed=seed, num_frames=num_frames,
                                             frame_interval=frame_interval, size=size, batch_size=64,
                                             too_short="skip")):
            write_shard(out, k, batch)
        from harness.io import atomic_write_json

        atomic_write_json(done, key)
    return out


def resolve(cfg: FVDConfig, fake_frame_interval: int, warn) -> tuple[FVDConfig, dict[str, Any]]:
    """The configuration compute_fvd measures (real: a prepared dataset or statistics; generated: a samples
    folder or .npy) and, for the record, what each side was given as and read from. ``warn(message)``
    prints and keeps a warning."""
    sides: dict[str, Any] = {}
    real_kind, fake_kind = kind_of(cfg.real), kind_of(cfg.fake) if cfg.fake else None
    if real_kind in ("array", "samples"):
        raise UserError(f"--real {cfg.real}: generated clips ({real_kind}); the real side is a folder of videos, a "
                        "prepared dataset or a statistics .npz")
    if fake_kind == "stats":
        raise UserError(f"--fake {cfg.fake}: a statistics file is the real side's; the generated side is a folder "
                        "of videos, a prepared dataset, a samples folder or a .npy")
    real, fake = Path(cfg.real), Path(cfg.fake) if cfg.fake else None
    if real_kind == "videos":
        real = prepare_folder(real, cfg.num_frames, cfg.frame_interval)
    sides["real"] = {"given": str(cfg.real), "kind": real_kind, "read": str(real)}
    if fake_kind in ("videos", "prepared"):
        prepared = prepare_folder(fake, cfg.num_frames, fake_frame_interval) if fake_kind == "videos" else fake
        sides["generated"] = {"given": str(cfg.fake), "kind": fake_kind, "prepared": str(prepared),
                              "frame_interval": fake_frame_interval}
    elif fake is not None:
        sides["generated"] = {"given": str(cfg.fake), "kind": fake_kind, "read": str(fake)}
    num = cfg.num
    available = {}
    if real_kind in ("videos", "prepared"):
        available["real"] = distinct_clips(real, cfg.num_frames, cfg.frame_interval)
    if fake_kind in ("videos", "prepared"):
        available["generated"] = distinct_clips(Path(sides["generated"]["prepared"]), cfg.num_frames,
                                                fake_frame_interval)
    short = {side: n for side, n in available.items() if 0 < n < num}  # 0: check_real says why, in full
    if short:
        held = ", ".join(f"the {side} side holds {n} distinct clips" for side, n in short.items())
        if cfg.num != PROTOCOL_NUM:
            raise UserError(f"--num {cfg.num}: {held}; ask for {min(short.values())} or fewer (clips would repeat)")
        num = min(short.values())
        warn(f"{held}: N = {num} on each side instead of the protocol's {PROTOCOL_NUM} (compare only with FVDs at "
             "the same N)")
    if fake_kind in ("videos", "prepared"):
        fake = clips_from_prepared(Path(sides["generated"]["prepared"]), num, cfg.num_frames, fake_frame_interval,
                                   cfg.size, cfg.seed, "generated")
        sides["generated"]["read"] = str(fake)
    for side, info in sides.items():
        prepared = info.get("prepared") or (info["read"] if info["kind"] in ("videos", "prepared") else None)
        if prepared:
            meta = json.loads((Path(prepared) / "dataset.json").read_text())
            info["videos"] = meta.get("counts", {})
            info["left_out"] = len(meta.get("other_files", [])) + int(meta.get("counts", {}).get("skipped", 0) or 0)
            if info["kind"] == "videos" and info["left_out"]:  # prepared here, unseen: name each file and why
                info["left_out_files"] = left_out_files(Path(prepared), meta)
                warn(f"the {side} side left out {info['left_out']} file(s) of {info['given']}: "
                     + "; ".join(f"{f['path']} ({f['reason']})" for f in info["left_out_files"][:5])
                     + (f"; and {info['left_out'] - 5} more, all in the record" if info["left_out"] > 5 else ""))
    return replace(cfg, real=str(real), fake=str(fake) if fake is not None else cfg.fake, num=num), sides
