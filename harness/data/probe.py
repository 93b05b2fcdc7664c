"""Probe one video file or frame folder: frame count, fps, size, rotation, or why the loader cannot read it.

Two checks (``prepare --check``), recorded per row (``check``) and in ``dataset.json``:

- ``quick`` (the default): PyAV reads the container header (the frame count it promises, fps, coded size)
  and decodes the first frame (the rotation the file asks for); decord, the reader the clip loader uses,
  counts the frames it can index and decodes the first and the last of them. Fewer frames than the header
  promises means the file was cut short (truncated). A file damaged in the middle passes this check: the
  loader then meets the damage while training and skips it (``harness.data.clips``, ``harness.train``).
- ``full``: the quick check, then every frame decoded in order by FFmpeg through PyAV on one thread (the
  reader the loader falls back to when decord fails: see :func:`pyav_frames`); for a frame folder, every
  image decoded. A video that passes can be read by the loader at every window.

Rotation: a file whose header asks for a quarter turn (a phone video tagged "rotate 90") is decoded by decord
already turned, so the manifest's width and height are the turned frame's (what the loader reads) and
``rotation`` records the turn (clockwise degrees). The probe checks that decord's frames have that size and,
for a turned video, that decord's first frame is the turned picture; a rotation that is not a quarter turn,
or one decord does not apply, is refused with the reason.

decord 0.6 cannot decode frames 16, 24, 48 or 72 pixels wide (its frame copy fails; every other even width
from 16 to 398 decodes): such a file is refused as "width 48 px: ..." with how to re-encode it, not called
corrupt.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".gif")
PYAV_ONLY_EXTS = (".gif",)  # decord cannot open these (no duration to measure): PyAV reads them, probe and loader
CHECKS = ("quick", "full")
CHECK_TEXT = {
    "quick": "quick (header, first frame by FFmpeg, first and last frame by decord; damage in the middle of a "
             "file is not seen: --check full decodes every frame)",
    "full": "full (every frame of every video decoded by FFmpeg, every image of every frame folder)",
}
DECORD_BAD_WIDTHS = (16, 24, 48, 72)  # decord 0.6: its frame copy fails at these widths (tests/test_data_probe.py)


@dataclass
class Probe:
    """What a probe found. ``error`` is empty for a readable video; width and height are the frames the
    loader reads (after ``rotation``, clockwise degrees, which decord applies)."""

    frames: int = 0
    fps: float = math.nan
    width: int = 0
    height: int = 0
    error: str = ""
    rotation: int = 0


def natural_key(name: str) -> list:
    """Sort ``frame_2.png`` before ``frame_10.png`` (frame folders are rarely zero-padded)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: str | Path) -> list[str]:
    """The image files of a frame folder, in frame order (natural sort of the names; hidden files are not frames)."""
    names = [p.name for p in Path(folder).iterdir()
             if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file()]
    return sorted(names, key=natural_key)


def clockwise(rotation: float) -> int:
    """PyAV's ``frame.rotation`` (counterclockwise degrees, as FFmpeg's display matrix) -> clockwise, in [0, 360)."""
    return int(round(-rotation)) % 360


def turn(frame: np.ndarray, rotation_cw: int) -> np.ndarray:
    """uint8 (H, W, 3) turned ``rotation_cw`` degrees clockwise (a quarter-turn multiple), as decord turns it."""
    if rotation_cw == 0:
        return frame
    return np.ascontiguousarray(np.rot90(frame, k={90: -1, 180: 2, 270: 1}[rotation_cw]))


def pyav_frames(path: str | Path, indices) -> np.ndarray:
    """uint8 (len(indices), H, W, 3): frames ``indices`` of a video decoded by FFmpeg through PyAV on one thread,
    numbered and turned as decord numbers and turns them (frame k: the k-th smallest packet pts).

    The same pixels as decord's ``get_batch`` (``tests/test_data_probe.py`` compares them, turned videos and
    .avi included). Deterministic: one decoding thread, and for each group of pictures holding wanted frames it
    decodes from the group's keyframe to its last wanted frame and no further, where decord's decoder thread
    reads ahead (so on a damaged file decord fails now and then on frames that decode).
    Raises the decoder's error (``av.error.*``) or ``LookupError`` when a wanted frame does not come out.
    """
    import bisect

    import av

    wanted = sorted({int(i) for i in indices})
    got: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None and p.size]
        pts = sorted(t for t, _ in packets)
        if not wanted or wanted[-1] >= len(pts) or wanted[0] < 0:
            raise LookupError(f"frames {wanted[0]}-{wanted[-1]} asked for, the file holds {len(pts)}" if wanted
                              else "no frames asked for")
        keys = sorted(t for t, key in packets if key) or [pts[0]]
        groups: dict[int, list[int]] = {}  # keyframe pts -> wanted frames of its group of pictures
        for k in wanted:
            groups.setdefault(keys[max(0, bisect.bisect_right(keys, pts[k]) - 1)], []).append(k)
        index_of = {t: k for k, t in enumerate(pts)}
        for start, members in groups.items():
            container.seek(start, stream=stream, backward=True, any_frame=False)  # flushes the decoder
            last, todo = pts[members[-1]], set(members)
            for frame in container.decode(stream):
                k = index_of.get(frame.pts)
                if k in todo:
                    got[k] = turn(frame.to_ndarray(format="rgb24"), clockwise(frame.rotation))
                    todo.discard(k)
                if not todo or (frame.pts is not None and frame.pts >= last):
                    break
    missing = [k for k in wanted if k not in got]
    if missing:
        raise LookupError(f"frame {missing[0]} does not come out of the decoder ({len(missing)} of {len(wanted)} "
                          "wanted frames missing)")
    return np.stack([got[int(i)] for i in indices])


def _presentation_pts(container, stream) -> list[int]:
    """The pts of every frame's packet, sorted: decord's frame k is the k-th (a pass over the packets, no decoding)."""
    return sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)


def pyav_frame_count(path: str | Path) -> int:
    """The number of frames decord would index (one pass over the packets)."""
    import av

    with av.open(str(path)) as container:
        return len(_presentation_pts(container, container.streams.video[0]))


def probe_video(path: str | Path, check: str = "quick") -> Probe:
    """Probe a video file (``check``: "quick" or "full", see the module's docstring); an unreadable, empty,
    truncated or damaged file gives a Probe with ``error`` set to the reason (and what to do, where we know)."""
    import av
    import decord

    path = Path(path)
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}; got {check!r}")
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
        return Probe(error=f"corrupt: {clean_error(e, path)}")
    first, ffmpeg_error, rotation = None, "", 0
    try:
        with av.open(str(path)) as container:
            container.streams.video[0].thread_type = "NONE"
            frame = next(container.decode(video=0))
            rotation = clockwise(frame.rotation)
            first = turn(frame.to_ndarray(format="rgb24"), rotation) if rotation % 90 == 0 else None
    except Exception as e:  # a file FFmpeg cannot start decoding (StopIteration: no frame at all)
        ffmpeg_error = clean_error(e, path)
    if rotation % 90:
        return Probe(fps=fps, width=width, height=height, rotation=rotation,
                     error=f"rotated {rotation}°: the loader turns frames by quarter turns only; re-encode it with "
                           f"the rotation applied (ffmpeg applies it when it re-encodes: ffmpeg -i {path.name} OUT)")
    if rotation in (90, 270):
        width, height = height, width  # decord reads the turned frames
    turned = f" after its {rotation}° rotation" if rotation in (90, 270) else ""
    n, decoded = 0, None
    try:
        if path.suffix.lower() in PYAV_ONLY_EXTS:
            raise RuntimeError("read by PyAV")  # to the PyAV reader below, as the loader does
        reader = decord.VideoReader(str(path), num_threads=1)
        n = len(reader)
        decoded = reader.get_batch([0, n - 1]).asnumpy() if n > 0 else None
    except Exception as e:  # decord raises DECORDError
        text = clean_error(e, path)
        if "DECORDArrayCopyFromTo" in text and width in DECORD_BAD_WIDTHS:  # fails the same way every time
            suggest = (width // 32 + 1) * 32
            return Probe(fps=fps, width=width, height=height, rotation=rotation, error=(
                f"width {width} px{turned}: decord {decord.__version__} cannot decode frames {width} pixels wide "
                f"({', '.join(map(str, DECORD_BAD_WIDTHS))} fail); re-encode it to another width, e.g. "
                f"ffmpeg -i {path.name} -vf scale={suggest}:-2 OUT"))
        # decord's decoder thread reads ahead, so on a file damaged further on it fails now and then on frames it
        # can read; the loader then reads the frames with PyAV (pyav_frames, deterministic), and so does this check
        try:
            n = n or pyav_frame_count(path)
            decoded = pyav_frames(path, [0, n - 1]) if n > 0 else None
        except Exception as e2:  # av.error.*, LookupError: the first or the last frame does not decode
            why = clean_error(e2, path) if not ffmpeg_error or n else ffmpeg_error
            return Probe(fps=fps, width=width, height=height, rotation=rotation,
                         error=f"corrupt: its first or last frame does not decode ({why})")
    if n == 0:
        return Probe(fps=fps, width=width, height=height, rotation=rotation, error="no decodable frames")
    found = Probe(n, fps, width, height, rotation=rotation)
    if tuple(decoded.shape[1:]) != (height, width, 3):
        found.error = f"decord decodes {tuple(decoded.shape[1:])} frames, expected {(height, width, 3)}{turned}"
        if rotation in (90, 270) and decoded.shape[1:3] == (width, height):
            found.error = (f"rotated {rotation}°: decord does not apply the rotation; re-encode it with the rotation "
                           f"applied (ffmpeg -i {path.name} OUT)")
        return found
    if rotation and first is not None and first.shape == decoded[0].shape:
        # decord turns the frames itself; its first frame must be FFmpeg's turned, not the unturned one
        unturned = turn(first, (360 - rotation) % 360)
        if unturned.shape == first.shape and _distance(decoded[0], unturned) < _distance(decoded[0], first):
            found.error = (f"rotated {rotation}°: decord does not apply the rotation; re-encode it with the "
                           f"rotation applied (ffmpeg -i {path.name} OUT)")
            return found
    if promised > n:
        found.error = f"truncated: header promises {promised} frames, {n} readable"
        return found
    if check == "full":
        found.error = decode_every_frame(path, n)
    return found


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def decode_every_frame(path: Path, n: int) -> str:
    """"" when FFmpeg (PyAV, one thread) decodes all ``n`` frames decord indexes, else why not (where it stops)."""
    import av

    count = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
            for _ in container.decode(stream):
                count += 1
    except Exception as e:  # av.error.InvalidDataError and friends: a damaged packet
        return f"corrupt: FFmpeg stops after {count} of {n} frames ({clean_error(e, path)})"
    if count < n:
        return f"corrupt: FFmpeg decodes {count} of the {n} frames decord indexes"
    return ""


def probe_frame_folder(path: str | Path, check: str = "quick") -> Probe:
    """Probe a folder of frames: the number of images; the first and last image (``check="full"``: every image)
    must decode, at one size."""
    from PIL import Image

    path = Path(path)
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}; got {check!r}")
    names = list_frames(path)
    if not names:
        return Probe(error="no images")
    size = None
    for name in names if check == "full" else (names[0], names[-1]):
        try:
            with Image.open(path / name) as im:
                im.load()
                here = im.size
        except Exception as e:  # PIL.UnidentifiedImageError, OSError (truncated image file), SyntaxError (bad PNG)
            return Probe(error=f"corrupt frame {name}: {clean_error(e, path / name)}")
        if size is None:
            size = (names[0], here)
        elif here != size[1]:
            return Probe(error=f"frames differ in size: {size[0]} is {size[1]}, {name} is {here}")
    (width, height) = size[1]
    return Probe(len(names), math.nan, width, height)


def clean_error(e: BaseException, path: Path) -> str:
    """The error's first line, without decord's "[hh:mm:ss] file.cc:line:" prefixes and without the file's
    folder (the manifest names the file already)."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+?:\d+: ", "", str(e))
    text = text.replace(str(path.parent) + "/", "").strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__
