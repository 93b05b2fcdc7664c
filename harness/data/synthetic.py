"""A synthetic video dataset in UCF101's layout: real video files of moving shapes, one motion per class.

Class ``k`` of ``K`` moves a shape in direction ``2πk/K`` at speed ``1 + k`` pixels a frame (scaled with
the frame size), so classes differ in motion, not only in appearance: a video model has to learn
motion to tell them apart, and the FVD between two classes is large. Everything else (shape, colours,
start position, background) is drawn per video from ``numpy.random.default_rng((seed, k, v))``, so the
same seed gives the same pixels on every machine. The encoded bytes are the same on every write with the
same PyAV / FFmpeg / x264 build (``tests/test_data_synthetic.py`` writes a dataset several times and compares
every file's sha256); another build of the encoder may write other bytes. For that, libx264 runs
on one thread with x264's macroblock tree off (``mbtree=0``): with it
on, a rewrite now and then encoded a video's first group of pictures differently (up to 6 grey levels
apart), even on one thread. mpeg4 (.avi) was stable as it is.

Layout under ``<out_dir>/source/`` (what ``prepare ucf101`` reads)::

    UCF-101/<Class>/v_<Class>_gXX_cYY.mp4
    ucfTrainTestlist/classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt
    synthetic.json   (the parameters, so an unchanged request is not written again)

Groups: videos ``v = 0, 1, ...`` of a class are group ``v // 2 + 1``, clip ``v % 2 + 1``. As in UCF101,
official split ``s`` puts whole groups into the test list: group ``g`` is test in split ``s`` when
``(g - 1) % 3 == s - 1``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.io import atomic_write_text
from harness.video import CODECS, write_video

CLIPS_PER_GROUP = 2
def class_names(num_classes: int) -> list[str]:
    """``MoveA, MoveB, ...``: letters only, so ``v_<Class>_g01_c01`` parses like UCF101's names."""
    names = []
    for k in range(num_classes):
        s, n = "", k
        while True:
            s = chr(ord("A") + n % 26) + s
            n = n // 26 - 1
            if n < 0:
                break
        names.append(f"Move{s}")
    return names


def video_name(cls: str, v: int, ext: str) -> str:
    return f"v_{cls}_g{v // CLIPS_PER_GROUP + 1:02d}_c{v % CLIPS_PER_GROUP + 1:02d}.{ext}"


def render_frames(k: int, num_classes: int, v: int, *, frames: int, width: int, height: int, seed: int) -> np.ndarray:
    """The pixels of video ``v`` of class ``k``: uint8 (frames, height, width, 3)."""
    rng = np.random.default_rng((seed, k, v))
    angle = 2 * np.pi * k / num_classes
    speed = (1 + k) * min(width, height) / 64  # pixels a frame
    radius = max(2.0, min(width, height) * rng.uniform(0.08, 0.14))
    square = bool(rng.integers(0, 2))
    fg = rng.integers(150, 256, size=3)
    bg0, bg1 = rng.integers(0, 90, size=3), rng.integers(0, 90, size=3)
    x0, y0 = rng.uniform(0, width), rng.uniform(0, height)

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs / max(width - 1, 1))[..., None]
    background = ((1 - ramp) * bg0 + ramp * bg1).astype(np.uint8)  # (H, W, 3) horizontal gradient
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        cx = (x0 + t * speed * np.cos(angle)) % width  # wraps around: the shape never leaves the frame
        cy = (y0 + t * speed * np.sin(angle)) % height
        dx = np.minimum(np.abs(xs - cx), width - np.abs(xs - cx))  # distance on the torus
        dy = np.minimum(np.abs(ys - cy), height - np.abs(ys - cy))
        inside = np.maximum(dx, dy) <= radius if square else dx**2 + dy**2 <= radius**2
        frame = background.copy()
        frame[inside] = fg
        out[t] = frame
    return out


def write_split_lists(lists_dir: Path, names: list[str], videos_per_class: int, ext: str) -> None:
    """classInd.txt (1-based) and the three official train/test lists, UCF101's exact line formats."""
    atomic_write_text(lists_dir / "classInd.txt", "".join(f"{k + 1} {c}\n" for k, c in enumerate(names)))
    for s in (1, 2, 3):
        train, test = [], []
        for k, c in enumerate(names):
            for v in range(videos_per_class):
                rel = f"{c}/{video_name(c, v, ext)}"
                group = v // CLIPS_PER_GROUP + 1
                if (group - 1) % 3 == s - 1:
                    test.append(f"{rel}\n")
                else:
                    train.append(f"{rel} {k + 1}\n")
        atomic_write_text(lists_dir / f"trainlist0{s}.txt", "".join(train))
        atomic_write_text(lists_dir / f"testlist0{s}.txt", "".join(test))


def generate_synthetic(
    out_dir: str | Path,
    *,
    num_classes: int = 4,
    videos_per_class: int = 6,
    frames: int | tuple[int, int] = 48,
    width: int = 64,
    height: int = 64,
    fps: int = 25,
    seed: int = 0,
    container: str = "mp4",
    gop: int = 12,
    progress: bool = True,
) -> Path:
    """Write the synthetic dataset under ``<out_dir>/source/`` and return that folder.

    ``frames`` is a length, or ``(lo, hi)`` for lengths drawn per video in ``[lo, hi]``. A folder
    already holding this exact request (``synthetic.json``) is left as it is.
    """
    if num_classes < 1 or videos_per_class < 1:
        raise UserError("synthetic data needs at least 1 class and 1 video per class")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise UserError(f"synthetic frames must be even and at least 16 pixels; got {width}x{height}")
    from harness.data.probe import DECORD_BAD_WIDTHS

    if width in DECORD_BAD_WIDTHS:  # prepare would skip every video it writes
        raise UserError(f"synthetic width {width}: decord, the loader's reader, cannot decode frames "
                        f"{', '.join(map(str, DECORD_BAD_WIDTHS))} pixels wide; choose another (e.g. {width + 16})")
    lo, hi = (frames, frames) if isinstance(frames, int) else frames
    if lo < 1 or hi < lo:
        raise UserError(f"bad frame count {frames!r}")
    if container not in CODECS:
        raise UserError(f"container must be one of {sorted(CODECS)}; got {container!r}")
    if width > 4096 or height > 4096:
        raise UserError(f"synthetic frames of {width}x{height}: at most 4096 pixels a side")
    if not 1 <= fps <= 240:
        raise UserError(f"--fps {fps}: expected 1 to 240 frames per second")
    if not 0 <= seed < 2**31:
        raise UserError(f"--seed {seed}: expected 0 to {2**31 - 1}")
    source = Path(out_dir) / "source"
    params = dict(num_classes=num_classes, videos_per_class=videos_per_class, frames=[lo, hi], width=width,
                  height=height, fps=fps, seed=seed, container=container, gop=gop, clips_per_group=CLIPS_PER_GROUP)
    meta_path = source / "synthetic.json"
    if meta_path.exists() and json.loads(meta_path.read_text()) == params:
        return source
    meta_path.unlink(missing_ok=True)  # written last: its presence means the folder is complete
    import shutil

    for folder in (source / "UCF-101", source / "ucfTrainTestlist"):  # another request: nothing of the old one stays
        shutil.rmtree(folder, ignore_errors=True)

    names = class_names(num_classes)
    jobs = [(k, v) for k in range(num_classes) for v in range(videos_per_class)]
    lengths = np.random.default_rng((seed, 2**31)).integers(lo, hi + 1, size=len(jobs))
    from harness.console import progress as progress_bar

    with progress_bar(transient=True) as bar:
        task = bar.add_task("writing synthetic videos", total=len(jobs), visible=progress)
        for (k, v), n in zip(jobs, lengths, strict=True):
            pixels = render_frames(k, num_classes, v, frames=int(n), width=width, height=height, seed=seed)
            write_video(source / "UCF-101" / names[k] / video_name(names[k], v, container), pixels, fps, container, gop)
            bar.advance(task)
    write_split_lists(source / "ucfTrainTestlist", names, videos_per_class, container)
    atomic_write_text(meta_path, json.dumps(params, indent=2, sort_keys=True) + "\n")
    return source
