"""The VAE stage: frames ↔ latents, and an optional latent cache of a prepared dataset.

``--vae sd-v1-4:PATH``  Stable Diffusion v1-4's AutoencoderKL (diffusers layout, the ``vae/``
                         folder), loaded from disk only; latents are scaled by 0.18215 as in
                         Latte; frames go through in chunks, in fp16 on a GPU.
``--vae identity``       pixel space (smoke and mini scales): latents are the frames.

Videos are (B, T, C, H, W) in [-1, 1]; latents (B, T, 4, H/8, W/8) (or the frames themselves).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from harness import paths
from harness.errors import UserError
from harness.io import atomic_write_json, sha256_file

SD_SCALE = 0.18215
WHERE_TO_GET = (
    "download the vae/ folder of CompVis/stable-diffusion-v1-4 (config.json + diffusion_pytorch_model.safetensors) "
    "and pass --vae sd-v1-4:PATH (or set MATTEN_BENCH_VAE=PATH and pass --vae sd-v1-4)"
)


class IdentityVAE:
    """Pixel space: encode and decode are the identity (3 channels, no downsampling)."""

    channels = 3
    downsample = 1

    def identity(self) -> dict[str, Any]:
        return {"kind": "identity"}

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return video

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.clamp(-1, 1)


class SDVAE:
    """diffusers' AutoencoderKL from a local folder; chunked per-frame encode/decode, fp16 on GPU."""

    channels = 4
    downsample = 8

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", chunk: int = 32):
        self.path = Path(path).expanduser().resolve()
        weights = _weights_file(self.path)
        from diffusers import AutoencoderKL  # heavy import, only when a real VAE is asked for

        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        try:
            self.vae = AutoencoderKL.from_pretrained(self.path, local_files_only=True, torch_dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load the SD VAE from {self.path} ({type(e).__name__}); {WHERE_TO_GET}") from e
        self.vae.to(self.device).eval().requires_grad_(False)
        self.channels = int(self.vae.config.latent_channels)
        self.downsample = 2 ** (len(self.vae.config.block_out_channels) - 1)  # 8 for SD v1-4
        self.chunk = chunk
        self._weights = weights

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "sd-v1-4",
            "path": str(self.path),
            "weights_file": self._weights.name,
            "weights_bytes": self._weights.stat().st_size,
            "weights_sha256": sha256_file(self._weights),
            "scale": SD_SCALE,
        }

    @torch.no_grad()
    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T, 3, H, W) in [-1, 1] → (B, T, 4, H/8, W/8), a sample of the posterior times 0.18215 (as Latte)."""
        b = video.shape[0]
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        out = []
        for chunk in frames.split(self.chunk):
            dist = self.vae.encode(chunk.to(self.device, self.dtype)).latent_dist
            out.append(dist.sample(generator=generator).float() * SD_SCALE)
        return rearrange(torch.cat(out), "(b t) c h w -> b t c h w", b=b)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, T, 4, h, w) → (B, T, 3, 8h, 8w) in [-1, 1]."""
        b = latents.shape[0]
        z = rearrange(latents, "b t c h w -> (b t) c h w") / SD_SCALE
        out = [self.vae.decode(c.to(self.device, self.dtype)).sample.float() for c in z.split(self.chunk)]
        return rearrange(torch.cat(out), "(b t) c h w -> b t c h w", b=b).clamp(-1, 1)


def _weights_file(path: Path) -> Path:
    if not (path / "config.json").is_file():
        raise UserError(f"no SD v1-4 VAE at {path} (no config.json); {WHERE_TO_GET}")
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path} has a config.json but no diffusion_pytorch_model weights; {WHERE_TO_GET}")


def load_vae(spec: str, device: str | torch.device = "cpu") -> IdentityVAE | SDVAE:
    """``identity`` | ``sd-v1-4:PATH`` | ``sd-v1-4`` (PATH from $MATTEN_BENCH_VAE)."""
    path = check_vae(spec)
    return IdentityVAE() if path is None else SDVAE(path, device)


def check_vae(spec: str) -> Path | None:
    """The VAE folder ``spec`` names, checked without loading it (None for ``identity``); UserError if its
    weights are not there. ``run`` calls it before its first stage."""
    if spec == "identity":
        return None
    kind, _, path = spec.partition(":")
    if kind != "sd-v1-4":
        raise UserError(f"unknown --vae {spec!r}; use 'identity' or 'sd-v1-4:PATH'")
    if not path:
        env = paths.vae_dir()
        if env is None:
            raise UserError(f"--vae sd-v1-4 needs a path; {WHERE_TO_GET}")
        path = str(env)
    folder = Path(path).expanduser().resolve()
    _weights_file(folder)
    return folder


# ------------------------------------------------------------------ latent cache

CACHE_META = "latent_cache.json"


def is_latent_cache(path: str | Path) -> bool:
    return (Path(path) / CACHE_META).is_file()


def encode_dataset(
    prepared_dir: str | Path,
    out_dir: str | Path,
    vae_spec: str,
    *,
    num_frames: int = 16,
    frame_interval: int = 3,
    size: int = 256,
    seed: int = 0,
    shard_size: int = 256,
    device: str = "cpu",
    batch_size: int = 4,
) -> dict[str, Any]:
    """Encode one fixed clip per video (``ClipDataset(train=False)``) into float16 latent shards.

    Finished shards are skipped on a rerun; a cache made with another VAE, data or clip
    settings is refused rather than mixed. The cache holds no random windows or flips, so
    training from it has no data augmentation (record it; train from the prepared data to have them).
    """
    from harness.lock import folder_lock

    out_dir = Path(out_dir)
    vae = load_vae(vae_spec, device)  # first: a missing VAE is reported before any data is read
    with folder_lock(out_dir, "encode"):  # one job per cache; an unwritable folder fails here
        return _encode(prepared_dir, out_dir, vae, num_frames=num_frames, frame_interval=frame_interval, size=size,
                       seed=seed, shard_size=shard_size, batch_size=batch_size)


def _encode(prepared_dir, out_dir: Path, vae, *, num_frames: int, frame_interval: int, size: int, seed: int,
            shard_size: int, batch_size: int) -> dict[str, Any]:
    from harness.data.clips import ClipDataset
    from harness.data.manifest import manifest_fingerprint

    ds = ClipDataset(
        prepared_dir, num_frames=num_frames, frame_interval=frame_interval, size=size, train=False, seed=seed
    )
    meta = {
        "vae": vae.identity(),
        "source": str(Path(prepared_dir).resolve()),
        "manifest_fingerprint": manifest_fingerprint(prepared_dir),
        "clip": {
            "num_frames": num_frames,
            "frame_interval": frame_interval,
            "size": size,
            "train": False,
            "seed": seed,
        },
        "num_videos": len(ds),
        "num_classes": ds.num_classes,
        "shard_size": shard_size,
        "seed": seed,
    }
    meta_path = out_dir / CACHE_META
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        old_cmp = {k: v for k, v in old.items() if k != "complete"}
        if old_cmp != meta:
            diff = sorted(k for k in meta if old.get(k) != meta[k])
            raise UserError(f"{out_dir} holds a latent cache made with different {', '.join(diff)}; use a new --out")
    atomic_write_json(meta_path, meta)
    from harness.console import progress

    n_shards = (len(ds) + shard_size - 1) // shard_size
    with progress() as bar:
        task = bar.add_task("encode", total=len(ds))
        for s in range(n_shards):
            lo, hi = s * shard_size, min(len(ds), (s + 1) * shard_size)
            path = out_dir / "latents" / f"latents-{s:05d}.npz"
            if path.exists():
                bar.advance(task, hi - lo)
                continue
            lat, labels = [], []
            for b0 in range(lo, hi, batch_size):
                items = [ds[i] for i in range(b0, min(hi, b0 + batch_size))]
                video = torch.stack([torch.as_tensor(it["video"]) for it in items])
                g = torch.Generator(device=vae.device if isinstance(vae, SDVAE) else "cpu").manual_seed(seed + b0)
                lat.append(vae.encode(video, generator=g).cpu().half().numpy())
                labels += [int(it["label"]) for it in items]
                bar.advance(task, len(items))
            _atomic_savez(path, latents=np.concatenate(lat), labels=np.asarray(labels, dtype=np.int64))
    meta["complete"] = True
    atomic_write_json(meta_path, meta)
    return meta


def write_latent_cache(
    out_dir: str | Path, latents: np.ndarray, labels: np.ndarray, num_classes: int, meta: dict[str, Any] | None = None
) -> Path:
    """A finished latent cache from arrays already in memory: ``latents`` (N, T, C, H, W) (stored as
    float16, as ``encode_dataset`` stores them), ``labels`` (N,) ints. ``meta`` adds to (and may replace)
    the cache's ``vae`` (default: identity) and description. Used by the training benchmark and tests."""
    out_dir = Path(out_dir)
    _atomic_savez(out_dir / "latents" / "latents-00000.npz", latents=latents.astype(np.float16),
                  labels=np.asarray(labels, dtype=np.int64))
    info = {"vae": {"kind": "identity"}, "num_classes": int(num_classes), "num_videos": int(len(latents)),
            "complete": True, **(meta or {})}
    atomic_write_json(out_dir / CACHE_META, info)
    return out_dir


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    import io

    from harness.io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


class LatentDataset(torch.utils.data.Dataset):
    """A finished latent cache as a dataset with ClipDataset's item layout (``video`` is the latents)."""

    def __init__(self, cache_dir: str | Path):
        cache_dir = Path(cache_dir)
        self.meta = json.loads((cache_dir / CACHE_META).read_text())
        if not self.meta.get("complete"):
            raise UserError(
                f"the latent cache {cache_dir} is unfinished; rerun matten-bench encode with the same options"
            )
        lat, lab = [], []
        for path in sorted((cache_dir / "latents").glob("latents-*.npz")):
            with np.load(path) as z:
                lat.append(z["latents"])
                lab.append(z["labels"])
        self.latents = np.concatenate(lat)
        self.labels = np.concatenate(lab)
        self.num_classes = int(self.meta["num_classes"])

    def set_epoch(self, epoch: int) -> None:  # fixed clips: nothing depends on the epoch
        pass

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """The clip's latents as stored (fp16: half the bytes a DataLoader worker sends; the trainer's
        clips_to_float makes them float32 on the device, exactly), its label and index."""
        return {"video": torch.from_numpy(self.latents[i].copy()), "label": int(self.labels[i]), "index": i}
