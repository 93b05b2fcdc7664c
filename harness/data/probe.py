"""Probe one video file or frame folder: frame count, fps, size, or why it cannot be used.

A video is opened twice, cheaply: PyAV reads the container header (frame count the header
promises, fps, size) and gives a readable error for files ffmpeg cannot open; decord, the
reader the clip loader uses, then counts the frames it can index and decodes the first and
last of them. Fewer frames than the header promises means the file was cut short (truncated).
Nothing here decodes a whole video.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov")


@dataclass
class Probe:
    """What a probe found. ``error`` is empty for a readable video."""

    frames: int = 0
    fps: float = math.nan
    width: int = 0
    height: int = 0
    error: str = ""


def natural_key(name: str) -> list:
    """Sort ``frame_2.png`` before ``frame_10.png`` (frame folders are rarely zero-padded)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: str | Path) -> list[str]:
    """The image files of a frame folder, in frame order (natural sort of the names; hidden files are not frames)."""
    names = [p.name for p in Path(folder).iterdir()
             if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file()]
    return sorted(names, key=natural_key)


def probe_video(path: str | Path) -> Probe:
    """Probe a video file; an unreadable, empty or truncated file gives a Probe with ``error`` set."""
    import av
    import decord

    path = Path(path)
    if path.stat().st_size == 0:
        return Probe(error="zero-byte file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return Probe(error="no video stream")
            stream = container.streams.video[0]
            promised = int(stream.frames or 0)
            fps = float(stream.average_rate) if stream.average_rate else math.nan
            width, height = stream.codec_context.width, stream.codec_context.height
    except Exception as e:  # PyAV raises a family of av.error.* (and OSError) for broken files
        return Probe(error=f"corrupt: {_first_line(e, path)}")
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        n = len(reader)
        if n > 0:
            shape = reader.get_batch([0, n - 1]).shape  # the first and the last frame must decode
            if tuple(shape[1:]) != (height, width, 3):
                # decord 0.6 gets some small widths (16, 24, 48, 72 pixels) wrong; UCF101's 320 and 256 are fine
                return Probe(fps=fps, width=width, height=height,
                             error=f"decord decodes {tuple(shape[1:])} frames, expected {(height, width, 3)}")
    except Exception as e:  # decord raises RuntimeError / DECORDError
        error = f"corrupt: decord cannot decode ({_first_line(e, path)})"
        return Probe(fps=fps, width=width, height=height, error=error)
    if n == 0:
        return Probe(fps=fps, width=width, height=height, error="no decodable frames")
    if promised > n:
        return Probe(n, fps, width, height, error=f"truncated: header promises {promised} frames, {n} readable")
    return Probe(n, fps, width, height)


def probe_frame_folder(path: str | Path) -> Probe:
    """Probe a folder of frames: the number of images; the first and last image must decode, at one size."""
    from PIL import Image

    path = Path(path)
    names = list_frames(path)
    if not names:
        return Probe(error="no images")
    sizes = []
    for name in (names[0], names[-1]):
        try:
            with Image.open(path / name) as im:
                im.load()
                sizes.append(im.size)
        except Exception as e:  # PIL.UnidentifiedImageError, OSError (truncated image file)
            return Probe(error=f"corrupt frame {name}: {_first_line(e, path / name)}")
    if sizes[0] != sizes[1]:
        return Probe(error=f"frames differ in size: {names[0]} is {sizes[0]}, {names[-1]} is {sizes[-1]}")
    (width, height) = sizes[0]
    return Probe(len(names), math.nan, width, height)


def _first_line(e: BaseException, path: Path) -> str:
    """The error's first line, without the file's absolute path (the manifest names the file already)."""
    text = str(e).replace(str(path.parent) + "/", "").strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__
