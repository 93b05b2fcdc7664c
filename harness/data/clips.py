"""Clips from a prepared dataset: the training Dataset and the fixed evaluation clips for FVD.

Sampling follows Latte (``datasets/video_transforms.TemporalRandomCrop`` + the ``np.linspace`` in its
dataset classes): a window of ``num_frames * frame_interval`` frames starts at a random ``begin`` in
``[0, max(0, total - window - 1)]`` (Latte's bound, which never picks the very last possible start),
ends at ``min(begin + window, total)``, and ``num_frames`` indices are spread evenly over it with
``np.linspace(begin, end - 1, num_frames).astype(int)``. For 16 frames at interval 3 that is
``begin + [0, 3, 6, 9, 12, 15, 18, 21, 25, 28, 31, 34, 37, 40, 43, 47]``: Latte's UCF101 / FFS path
(its Sky / Taichi classes slice ``[first:last+1:interval]`` instead; we use the linspace for all).

Randomness: the window and the flip of item ``i`` come from ``numpy.random.default_rng((seed, epoch, i))``
(window first, then flip), so they depend only on (seed, epoch, i): identical in any DataLoader
worker, after a resume, and on any machine. Flip (p = 0.5) only when ``train=True``.

Decoding reads only the frames a clip needs: decord's ``VideoReader.get_batch(indices)`` (which
decodes from the keyframe before the window up to its last frame and converts only the needed
frames to RGB), or the needed image files of a frame folder with PIL.

A file that cannot be read: decord's decoder thread reads ahead, so on a file damaged further on it fails now
and then on a window whose frames decode. When decord fails, the window is read again by FFmpeg through PyAV
on one thread (``harness.data.probe.pyav_frames``: no read-ahead, and the same pixels as decord's in every
case we test: H.264 with B-frames, MPEG-4 .avi, turned videos), and the item says so (``"reread": True``).
Only when that fails too is the window unreadable: :class:`UnreadableVideo` (a :class:`UserError` naming the
file and why) is raised, the same for every run, machine and number of workers. The trainer then substitutes
another clip (``harness.train.TrainingSamples``); ``eval_clips`` stops with the error; ``prepare --check
full`` finds such files beforehand.

Resizing: the short side to ``size``, then a centre crop of ``size x size`` (Latte's
``UCFCenterCropVideo``), done with ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` on the T needed frames only. We pass ``antialias=True`` by default: Latte
resizes without antialiasing, which aliases when it shrinks (UCF101's 240-pixel short side to 128,
say); at 256 from 240 (an upscale) both give the same pixels. ``antialias=False`` restores Latte's
filter. We resize the uint8 frames (torch's vectorised uint8 path, about 20x faster on a CPU than
resizing floats; the result is rounded to whole grey levels, within 1 of a float resize), where
Latte resizes floats in [0, 1]. We resize in torch rather than in decord (its ``width``/``height``
arguments) because decord's scaler needs the output size before reading, resizes every decoded
frame, and does not document its filter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.manifest import load_info, load_manifest
from harness.data.probe import PYAV_ONLY_EXTS, clean_error, list_frames, pyav_frames
from harness.errors import UserError


class UnreadableVideo(UserError):
    """A window of a manifest's video (or frame folder) that neither decord nor PyAV could read.

    ``path`` is the manifest's relative path, ``reason`` the decoder's error; the message names both and
    says how to find every such file."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot read {path}: {reason} (`matten-bench prepare ... --check full` finds and skips "
                         "every unreadable video)")

    def __reduce__(self):  # picklable with its two arguments
        return (type(self), (self.path, self.reason))


def window_indices(total: int, num_frames: int, frame_interval: int, rng: np.random.Generator) -> np.ndarray:
    """Latte's temporal sampling: ``num_frames`` indices evenly inside a random window of ``num_frames * interval``."""
    window = num_frames * frame_interval
    rand_end = max(0, total - window - 1)
    begin = int(rng.integers(0, rand_end + 1))
    end = min(begin + window, total)
    return np.linspace(begin, end - 1, num_frames).astype(np.int64)


def short_mask(totals: Sequence[int] | np.ndarray, num_frames: int, frame_interval: int) -> np.ndarray:
    """bool (V,): which of the videos (lengths ``totals`` in frames) are shorter than the window of
    ``num_frames * frame_interval`` frames. Their clips could not keep the interval: :func:`window_indices`
    would spread the ``num_frames`` indices over the whole video instead (a smaller interval, silently).
    The same rule as ``prepare``'s "too short" (``harness.data.prepare``)."""
    return np.asarray(totals, dtype=np.int64) < num_frames * frame_interval


def short_videos(prepared_dir: str | Path, num_frames: int, frame_interval: int) -> dict[str, int]:
    """How the usable videos of a prepared dataset fit a (``num_frames``, ``frame_interval``) window, from the
    manifest alone (nothing decoded): ``{"window": frames a clip spans, "videos": usable videos, "too_short":
    how many are shorter than the window, "shortest": the shortest's length in frames (0 without videos)}``.

    What ``fvd`` checks before any detector work and what a trainer can check before it starts; raises
    ``UserError`` for a folder that is not a prepared dataset.
    """
    totals = load_manifest(prepared_dir, ok_only=True)["frames"].astype(int).to_numpy()
    return {"window": num_frames * frame_interval, "videos": len(totals),
            "too_short": int(short_mask(totals, num_frames, frame_interval).sum()),
            "shortest": int(totals.min()) if len(totals) else 0}


def drop_short_rows(
    rows: Any, num_frames: int, frame_interval: int, too_short: str, where: str | Path
) -> tuple[Any, int]:
    """The manifest rows (a DataFrame) long enough for the window, and how many were dropped.

    ``too_short="refuse"``: any video shorter than ``num_frames * frame_interval`` frames is a ``UserError``
    (one line: how many, the shortest, how to fix it). ``"skip"``: they are dropped and counted; a
    ``UserError`` when none is left. Never squeezed into a smaller interval.
    """
    if too_short not in ("refuse", "skip"):
        raise UserError(f"too_short must be 'refuse' or 'skip'; got {too_short!r}")
    short = short_mask(rows["frames"].astype(int), num_frames, frame_interval)
    n = int(short.sum())
    if n == 0:
        return rows, 0
    window = num_frames * frame_interval
    shortest = int(rows["frames"].astype(int).min())
    what = (f"{where}: {n} of {len(rows)} usable videos have fewer than {window} frames ({num_frames} frames at "
            f"interval {frame_interval}; the shortest has {shortest})")
    if too_short == "refuse" or n == len(rows):
        raise UserError(f"{what}; their clips would not keep the interval. Use a smaller --frame-interval or "
                        f"--num-frames, or prepare the dataset with --num-frames {num_frames} --frame-interval "
                        f"{frame_interval} (which skips them)")
    return rows[~short].reset_index(drop=True), n


def resize_center_crop(
    frames: np.ndarray | torch.Tensor, size: int, *, crop: str = "center", antialias: bool = True
) -> torch.Tensor:
    """uint8 (T, H, W, 3) → uint8 (T, 3, size, size).

    ``crop="center"``: short side to ``size``, then centre crop. ``crop="none"``: squash to ``size x size``.
    """
    frames = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames.contiguous()
    x = frames.permute(0, 3, 1, 2)  # (T, H, W, 3) → (T, 3, H, W), channels-last
    h, w = x.shape[-2:]
    if crop == "none":
        target = (size, size)
    elif crop == "center":
        scale = size / min(h, w)
        target = (max(size, round(h * scale)), max(size, round(w * scale)))
    else:
        raise UserError(f"crop must be 'center' or 'none'; got {crop!r}")
    if target != (h, w):
        # The antialias filter only differs from plain bilinear where an axis shrinks; on an upscale
        # (UCF101's 240 lines to 256) both give the same pixels and the plain path is 25% faster.
        shrinks = target[0] < h or target[1] < w
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=antialias and shrinks)
    top, left = round((target[0] - size) / 2), round((target[1] - size) / 2)
    return x[..., top : top + size, left : left + size]


def clips_to_float(video: torch.Tensor) -> torch.Tensor:
    """uint8 clips (..., T, H, W, 3) -> float32 (..., T, 3, H, W) in [-1, 1], contiguous: the same
    numbers ClipDataset(uint8=False) yields. Float input (latents, float clips) comes back as float32:
    float32 unchanged, fp16 latents (as a latent cache stores them) converted, which is exact.

    The trainer's DataLoader workers send uint8 frames or fp16 latents (a quarter, or half, of the bytes
    to copy between processes: the receive cost follows the bytes, results/benchmarks.md) and this runs
    on the consumer's side, on the GPU when there is one.
    """
    if video.dtype != torch.uint8:
        return video.float()
    return video.movedim(-1, -3).to(torch.float32, memory_format=torch.contiguous_format).div_(127.5).sub_(1.0)


class ClipDataset(torch.utils.data.Dataset):
    """Clips of ``num_frames`` frames at ``frame_interval`` from the usable videos of a prepared dataset.

    ``ds[i]`` is ``{"video": float32 (T, C, H, W) in [-1, 1] (or uint8 (T, H, W, 3) when uint8=True),
    "label": int (-1 if unlabeled), "index": i, "reread": bool}`` ("reread": decord failed and PyAV read the
    window, the same pixels). Videos are the manifest's "ok" rows, in path order. A window that cannot be read
    raises :class:`UnreadableVideo`.
    ``source`` overrides the source root recorded in ``dataset.json`` (a copy moved elsewhere).
    Videos shorter than the window (``num_frames * frame_interval`` frames) are refused
    (``too_short="refuse"``, a ``UserError``) or left out and counted in ``self.too_short``
    (``too_short="skip"``): :func:`drop_short_rows`; never squeezed into a smaller interval.
    """

    def __init__(
        self,
        prepared_dir: str | Path,
        *,
        num_frames: int = 16,
        frame_interval: int = 3,
        size: int = 256,
        train: bool = True,
        seed: int = 0,
        uint8: bool = False,
        crop: str = "center",
        antialias: bool = True,
        source: str | Path | None = None,
        too_short: str = "refuse",
    ) -> None:
        info = load_info(prepared_dir)
        self.rows = load_manifest(prepared_dir, ok_only=True)
        if len(self.rows) == 0:
            raise UserError(f"no usable videos in {prepared_dir}")
        self.rows, self.too_short = drop_short_rows(self.rows, num_frames, frame_interval, too_short, prepared_dir)
        self.source = Path(source) if source is not None else Path(info["source"])
        if not self.source.is_dir():
            raise UserError(f"source folder {self.source} (from {prepared_dir}/dataset.json) does not exist")
        self.paths = self.rows["path"].tolist()
        self.kinds = self.rows["kind"].tolist()
        self.totals = self.rows["frames"].astype(int).tolist()
        self.labels = self.rows["label"].astype(int).tolist()
        self.num_classes = int(info.get("num_classes", 0)) if max(self.labels) >= 0 else 0
        self.num_frames, self.frame_interval, self.size = num_frames, frame_interval, size
        self.train, self.seed, self.uint8 = train, seed, uint8
        self.crop, self.antialias = crop, antialias
        self.epoch = 0
        self._frame_lists: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Windows and flips of the next epoch (call in the training loop, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def sample_plan(self, i: int, epoch: int | None = None) -> tuple[np.ndarray, bool]:
        """The frame indices and the flip of item ``i`` at ``epoch``: a function of (seed, epoch, i) only."""
        rng = np.random.default_rng((self.seed, self.epoch if epoch is None else epoch, i))
        indices = window_indices(self.totals[i], self.num_frames, self.frame_interval, rng)
        flip = bool(rng.random() < 0.5) and self.train
        return indices, flip

    def read_frames(self, i: int, indices: np.ndarray) -> tuple[torch.Tensor, bool]:
        """uint8 (T, H, W, 3): only the frames at ``indices`` of video ``i``, and whether PyAV read them (decord
        failed). Raises :class:`UnreadableVideo` when the window cannot be read."""
        path = self.source / self.paths[i]
        if self.kinds[i] == "video":
            import decord
            from decord.bridge import to_torch

            if path.suffix.lower() in PYAV_ONLY_EXTS:  # decord cannot open these at all: PyAV is their reader
                try:
                    return torch.from_numpy(pyav_frames(path, indices.tolist())), False
                except Exception as e:  # av.error.*, LookupError, OSError
                    raise UnreadableVideo(self.paths[i], clean_error(e, path)) from None
            try:
                reader = decord.VideoReader(str(path), num_threads=1)
                # decord's torch bridge (DLPack) hands over decord's buffer without a copy; .asnumpy() would copy
                # 3.7 MB a clip into a fresh numpy array (a quarter of the decode time on our 2-CPU CI VM).
                return to_torch(reader.get_batch(indices.tolist())), False
            except Exception:  # DECORDError: damage, or decord's read-ahead meeting damage after the window
                pass
            try:
                return torch.from_numpy(pyav_frames(path, indices.tolist())), True
            except Exception as e:  # av.error.*, LookupError, OSError: these frames do not decode
                raise UnreadableVideo(self.paths[i], clean_error(e, path)) from None
        from PIL import Image

        if i not in self._frame_lists:
            try:
                self._frame_lists[i] = list_frames(path)
            except OSError as e:  # the folder is gone
                raise UnreadableVideo(self.paths[i], clean_error(e, path)) from None
        names = self._frame_lists[i]
        frames = []
        for k in indices:
            if k >= len(names):
                raise UnreadableVideo(self.paths[i], f"frame {k + 1} asked for, the folder holds {len(names)} images")
            try:
                with Image.open(path / names[k]) as im:
                    frames.append(np.asarray(im.convert("RGB")))
            except Exception as e:  # OSError (a truncated image), PIL.UnidentifiedImageError, SyntaxError (bad PNG)
                raise UnreadableVideo(self.paths[i], f"frame {names[k]}: {clean_error(e, path / names[k])}") from None
        if len({f.shape for f in frames}) > 1:
            raise UnreadableVideo(self.paths[i], f"its frames differ in size: {sorted({f.shape for f in frames})}")
        return torch.from_numpy(np.stack(frames)), False

    def clip(self, i: int, epoch: int | None = None) -> dict[str, Any]:
        """Item ``i`` at ``epoch`` (default: the current epoch)."""
        indices, flip = self.sample_plan(i, epoch)
        frames, reread = self.read_frames(i, indices)
        x = resize_center_crop(frames, self.size, crop=self.crop, antialias=self.antialias)
        video = x.permute(0, 2, 3, 1)  # (T, H, W, 3), a view of the crop
        if flip:
            video = video.flip(2)  # a copy
        # uint8 (T, H, W, 3), or float32 (T, 3, H, W) in [-1, 1]: each one copy of the (flipped) crop
        video = video.contiguous() if self.uint8 else clips_to_float(video)
        return {"video": video, "label": self.labels[i], "index": i, "reread": reread}

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.clip(i)


def eval_plan(num_videos: int, num: int, seed: int) -> list[tuple[int, int]]:
    """(video, pass) of each of ``num`` evaluation clips: a seeded permutation of the videos, repeated
    with a new pass (hence new windows) when ``num`` exceeds the number of videos."""
    order = np.random.default_rng((seed, 0xE7A1)).permutation(num_videos)
    return [(int(order[j % num_videos]), j // num_videos) for j in range(num)]


class _EvalClips(torch.utils.data.Dataset):
    """Evaluation clip ``j`` of the plan, or (in a worker, where an exception would cross processes as a
    traceback) a blank clip with the error, which :func:`eval_clips` raises as one line."""

    def __init__(self, ds: ClipDataset, plan: list[tuple[int, int]]) -> None:
        self.ds, self.plan = ds, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, j: int) -> dict[str, Any]:
        video, passno = self.plan[j]
        try:
            item = self.ds.clip(video, epoch=passno)
        except UnreadableVideo as e:
            blank = torch.zeros((self.ds.num_frames, self.ds.size, self.ds.size, 3), dtype=torch.uint8)
            return {"video": blank, "error": str(e), "reread": ""}
        return {"video": item["video"], "error": "", "reread": self.ds.paths[video] if item["reread"] else ""}


def eval_clips(
    prepared_dir: str | Path,
    num: int,
    *,
    seed: int = 0,
    num_frames: int = 16,
    frame_interval: int = 3,
    size: int = 256,
    batch_size: int = 16,
    num_workers: int = 0,
    antialias: bool = True,
    too_short: str = "refuse",
) -> Iterator[np.ndarray]:
    """``num`` real clips for FVD as uint8 (B, T, H, W, 3) batches: the same clips, in the same order,
    on every run and machine (windows from (seed, pass, video); no flips). Videos shorter than the window
    are refused or left out (``too_short``, as :class:`ClipDataset`).

    A clip that cannot be read is an error (:class:`UnreadableVideo`, one line naming the file), not replaced:
    the reference set is the plan's clips, so a file that cannot be read must leave the manifest
    (``prepare --check full``), which makes another plan and another real-statistics cache key. Windows that
    decord failed on and PyAV read (the same pixels) are named in a warning at the end.
    """
    ds = ClipDataset(prepared_dir, num_frames=num_frames, frame_interval=frame_interval, size=size, train=False,
                     seed=seed, uint8=True, antialias=antialias, too_short=too_short)
    loader = torch.utils.data.DataLoader(_EvalClips(ds, eval_plan(len(ds), num, seed)), batch_size=batch_size,
                                         shuffle=False, num_workers=num_workers)
    reread: list[str] = []
    for batch in loader:
        for error in batch["error"]:
            if error:
                raise UserError(f"FVD's real clips: {error}")
        reread += [path for path in batch["reread"] if path]
        yield batch["video"].numpy()
    if reread:
        from rich.markup import escape

        from harness.console import console

        files = sorted(set(reread))
        console.print(f"[yellow]warning:[/yellow] decord failed on {len(reread)} real clip(s), which FFmpeg (PyAV) "
                      f"then read (the same pixels): {escape(', '.join(files[:5]))}"
                      + (f" and {len(files) - 5} more" if len(files) > 5 else ""), soft_wrap=True, highlight=False)
