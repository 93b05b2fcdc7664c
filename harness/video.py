"""Writing videos: the one encoder the harness uses (synthetic datasets, sampled videos)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness.errors import UserError

CODECS = {"mp4": "libx264", "avi": "mpeg4"}


def write_video(path: str | Path, frames: np.ndarray, fps: int, container: str = "mp4", gop: int = 12) -> None:
    """Encode uint8 (T, H, W, 3) frames with PyAV (mp4: libx264, avi: mpeg4) through a temporary file; the same
    frames give the same bytes with the same encoder build (one thread; x264's macroblock tree off).

    ``gop`` is the keyframe interval; 12 is close to UCF101's own .avi files, which matters for
    how far a reader must decode to reach a frame.
    """
    import av

    if container not in CODECS:
        raise UserError(f"container must be one of {sorted(CODECS)}; got {container!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    t, h, w, _ = frames.shape
    with av.open(str(tmp), "w", format=container) as out:
        stream = out.add_stream(CODECS[container], rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.gop_size = gop
        stream.codec_context.thread_count = 1  # deterministic bytes: x264's threads split frames by timing ...
        if container == "mp4":  # ... and x264's macroblock tree off: with it, rewrites varied now and then
            stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}
        else:
            stream.bit_rate = 4_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)
