"""`fvd --real A --fake B` on folders of videos (any size, mp4 and gif), prepared datasets and samples folders."""

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from fvd_helpers import StandInDetector

from harness.clip_shards import write_shard
from harness.config import FVDConfig
from harness.errors import UserError
from harness.fvd.protocol import compute_fvd


def write_video(path: Path, frames: np.ndarray, codec: str = "libx264", fps: int = 8) -> None:
    """uint8 (T, H, W, 3) to a video file (PyAV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def moving(n: int, frames: int, h: int, w: int, seed: int) -> list[np.ndarray]:
    """``n`` clips (T, H, W, 3) of a bright square sliding right on a grey field, random start per clip."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        clip = np.full((frames, h, w, 3), 90, np.uint8)
        y, x = rng.integers(0, h - 16), rng.integers(0, w // 2)
        for t in range(frames):
            clip[t, y : y + 16, (x + 2 * t) % (w - 16) : (x + 2 * t) % (w - 16) + 16] = 230
        out.append(clip)
    return out


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("MATTEN_BENCH_CACHE", str(tmp_path / "cache"))
    from harness.fvd import weights

    monkeypatch.setattr(weights, "load_i3d",
                        lambda path=None, device="cpu": (StandInDetector(), {"kind": "stand-in", "sha256": "0" * 64}))
    for i, clip in enumerate(moving(6, 40, 60, 80, seed=0)):  # real: 80x60, 40 frames
        write_video(tmp_path / "real" / f"r{i}.mp4", clip)
    fake = moving(6, 16, 48, 64, seed=1)  # generated: 64x48, 16 frames, one of them a gif
    for i, clip in enumerate(fake[:5]):
        write_video(tmp_path / "fake" / "sub" / f"g{i}.mp4", clip)
    write_video(tmp_path / "fake" / "g5.gif", fake[5], codec="gif")
    (tmp_path / "fake" / "notes.txt").write_text("not a video")
    return tmp_path


def test_two_folders_of_videos_in_one_call(folders):
    cfg = FVDConfig(real=str(folders / "real"), fake=str(folders / "fake"), num_frames=16, frame_interval=1,
                    size=48, device="cpu", bootstrap=0)
    rec = compute_fvd(cfg)
    # N came down from the protocol's 2048 to what the generated folder holds (6 one-window videos), said so
    assert rec["clips"] == {"real": 6, "generated": 6}
    assert any("N = 6 on each side instead of the protocol's 2048" in w for w in rec["warnings"])
    real, gen = rec["inputs"]["real"], rec["inputs"]["generated"]
    assert real["kind"] == "videos" and real["videos"]["ok"] == 6
    assert gen["kind"] == "videos" and gen["videos"]["ok"] == 6 and gen["frame_interval"] == 1
    other = json.loads((Path(gen["prepared"]) / "dataset.json").read_text())["other_files"]
    assert [o["path"] for o in other] == ["notes.txt"]  # what was not read, with its reason
    # the same videos as a prepared dataset and as clip shards give the same number (one reader, one crop)
    again = compute_fvd(FVDConfig(real=real["read"], fake=gen["read"], num=6, num_frames=16, frame_interval=1,
                                  size=48, device="cpu", bootstrap=0))
    assert again["fvd"] == pytest.approx(rec["fvd"], rel=1e-9)
    shards = np.concatenate([np.load(p) for p in sorted(Path(gen["read"], "clips").glob("clips-*.npy"))])
    assert shards.shape == (6, 16, 48, 48, 3)  # short side to 48, centre crop, as the real side


def test_bad_combinations_are_one_line(folders):
    kw = dict(num_frames=16, frame_interval=1, size=48, device="cpu", bootstrap=0)
    with pytest.raises(UserError, match="--num 10: the generated side holds 6 distinct clips; ask for 6 or fewer"):
        compute_fvd(FVDConfig(real=str(folders / "real"), fake=str(folders / "fake"), num=10, **kw))
    write_shard(folders / "samples", 0, np.zeros((6, 16, 48, 48, 3), np.uint8))
    with pytest.raises(UserError, match="generated clips \\(samples\\); the real side is a folder of videos"):
        compute_fvd(FVDConfig(real=str(folders / "samples"), fake=str(folders / "fake"), num=6, **kw))
    (folders / "s.npz").write_bytes(b"x")
    with pytest.raises(UserError, match="a statistics file is the real side's"):
        compute_fvd(FVDConfig(real=str(folders / "real"), fake=str(folders / "s.npz"), num=6, **kw))
    with pytest.raises(UserError, match="does not exist"):
        compute_fvd(FVDConfig(real=str(folders / "nope"), fake=str(folders / "fake"), num=6, **kw))


def test_on_the_command_line_with_the_real_detector(folders, monkeypatch):
    from fvd_helpers import cached_weights

    weights = cached_weights()
    out = subprocess.run([sys.executable, "-m", "harness.cli", "fvd", "--real", str(folders / "real"), "--fake",
                          str(folders / "fake"), "--num-frames", "16", "--frame-interval", "1", "--size", "48",
                          "--device", "cpu", "--i3d", str(weights), "--bootstrap", "50"],
                         capture_output=True, text=True, env={**os.environ, "MATTEN_BENCH_CACHE": str(folders / "c2")})
    assert out.returncode == 0, out.stderr[-2000:]
    value = float(out.stdout.strip().splitlines()[-1])
    assert value > 0 and "95% bootstrap interval" in out.stderr.replace("\n", " ")


def test_clips_in_memory_any_layout_and_range_give_the_same_number(folders):
    """uint8 NTHWC, float [-1, 1] NTCHW tensors and float [0, 1]: the same clips, the same FVD; the layout and a
    float range must be stated."""
    import torch

    from harness.fvd import fvd_of_clips

    real = np.stack(moving(5, 16, 60, 80, seed=0))  # (N, T, H, W, 3) uint8, not square
    fake = np.stack(moving(5, 16, 48, 64, seed=1))
    ref = fvd_of_clips(real, fake, layout="NTHWC", device="cpu", bootstrap=20)
    assert ref["size"] == 48 and ref["clips"] == {"real": 5, "generated": 5}
    assert any("the sides differ in size" in w for w in ref["warnings"])
    as_float = [torch.from_numpy(x).permute(0, 1, 4, 2, 3).float() / 127.5 - 1 for x in (real, fake)]
    signed = fvd_of_clips(*as_float, layout="NTCHW", value_range=(-1, 1), device="cpu", bootstrap=20)
    assert signed["fvd"] == pytest.approx(ref["fvd"], rel=1e-6)
    unit = fvd_of_clips(real / 255.0, fake / 255.0, layout="NTHWC", value_range=(0, 1), device="cpu", bootstrap=0)
    assert unit["fvd"] == pytest.approx(ref["fvd"], rel=1e-6) and unit["interval"] is None
    for kwargs, message in (({"layout": "NHWC"}, "layout must be 'NTHWC' or 'NTCHW'"),
                            ({"layout": "NTCHW"}, "channels as NTCHW says; expected 3")):
        with pytest.raises(UserError, match=message):
            fvd_of_clips(real, fake, device="cpu", **kwargs)
    with pytest.raises(UserError, match=r"float64: say their range, e.g. value_range=\(-1, 1\)"):
        fvd_of_clips(real / 255.0, fake / 255.0, layout="NTHWC", device="cpu")
    with pytest.raises(UserError, match="values lie outside value_range"):
        fvd_of_clips(real / 127.5, fake / 255.0, layout="NTHWC", value_range=(0, 1), device="cpu")
    with pytest.raises(UserError, match="I3D needs at least 9"):
        fvd_of_clips(real[:, :8], fake[:, :8], layout="NTHWC", device="cpu")


def test_the_files_a_folder_of_videos_left_out_are_named_with_their_reasons(folders):
    """A new user's case: a real folder with corrupt and empty mp4s gave an FVD whose output said nothing of them
    (the record had only a count). Each is now in a warning and in the record, with the reason prepare gave."""
    (folders / "real" / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(1000))
    (folders / "real" / "empty.mp4").write_bytes(b"")
    cfg = FVDConfig(real=str(folders / "real"), fake=str(folders / "fake"), num=6, num_frames=16, frame_interval=1,
                    size=48, device="cpu", bootstrap=0)
    rec = compute_fvd(cfg)
    real, gen = rec["inputs"]["real"], rec["inputs"]["generated"]
    named = {f["path"]: f["reason"] for f in real["left_out_files"]}
    assert set(named) == {"broken.mp4", "empty.mp4"} and all(named.values()) and real["left_out"] == 2
    assert [f["path"] for f in gen["left_out_files"]] == ["notes.txt"]
    said = [w for w in rec["warnings"] if "left out" in w]
    assert len(said) == 2 and all(f"{p} ({r})" in said[0] for p, r in named.items())
    assert "notes.txt" in said[1]
