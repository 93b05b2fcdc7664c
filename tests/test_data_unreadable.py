"""Files the loader cannot read: named in one line, never a traceback; training substitutes a clip chosen from
(seed, position) under a budget, the same with any number of workers and across a resume; FVD's real clips stop
with the file's name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from _data_fixtures import damage_middle, frame_folder, gray_video, noise_video

from harness import train as T
from harness.data.clips import ClipDataset, UnreadableVideo, eval_clips
from harness.data.prepare import prepare_dataset
from harness.data.probe import pyav_frames
from harness.errors import UserError
from tests.test_train import BUILDER, assert_bitwise_equal, final_state

SMALL = dict(num_frames=4, frame_interval=2)


def spoil(path: Path) -> None:
    """Replace a prepared video with bytes no decoder reads (the manifest still says it is fine)."""
    path.write_bytes(b"\x00not a video any more" * 200)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A prepared FFS-like folder: a good video, a 120-frame mp4 damaged in its middle (passes the quick check),
    a frame folder whose middle JPEGs are cut short (passes too)."""
    root = tmp_path_factory.mktemp("unreadable")
    gray_video(root / "src" / "a.mp4", 40, size=(32, 32))
    damage_middle(noise_video(root / "src" / "b.mp4", 120, size=(32, 32)))
    folder = frame_folder(root / "src" / "c", 40, size=(32, 32), ext="jpg")
    for t in range(15, 25):
        (folder / f"img_{t}.jpg").write_bytes((folder / f"img_{t}.jpg").read_bytes()[:150])
    df = prepare_dataset("ffs", root / "src", root / "prep", progress=False, **SMALL)
    assert (df["status"] == "ok").all()  # the quick check does not see damage in the middle
    return root / "prep"


def test_unreadable_windows_name_the_file_the_rest_read(damaged):
    ds = ClipDataset(damaged, num_frames=4, frame_interval=2, size=16, train=False, uint8=True)
    assert ds.paths == ["a.mp4", "b.mp4", "c"]
    video = ds.source / "b.mp4"
    bad_windows = []
    for begin in range(0, 112, 8):
        try:
            frames, _ = ds.read_frames(1, np.arange(begin, begin + 8, 2))
        except UnreadableVideo as e:
            assert e.path == "b.mp4" and str(e).startswith("cannot read b.mp4: ") and "\n" not in str(e)
            assert "--check full" in str(e)
            bad_windows.append(begin)
            continue
        # decord's read-ahead fails now and then near the damage: compare with the deterministic reader
        assert np.array_equal(frames.numpy(), pyav_frames(video, list(range(begin, begin + 8, 2))))
    assert bad_windows and bad_windows[0] > 0 and bad_windows[-1] < 104  # the middle, not the ends
    with pytest.raises(UnreadableVideo, match=r"^cannot read c: frame img_15\.jpg: OSError"):
        ds.read_frames(2, np.array([13, 14, 15, 16]))
    assert ds.read_frames(2, np.array([0, 1, 2, 3]))[0].shape == (4, 32, 32, 3)


def test_when_decord_fails_pyav_reads_the_same_pixels(damaged, monkeypatch):
    ds = ClipDataset(damaged, num_frames=4, frame_interval=2, size=16, seed=4, train=False, uint8=True)
    want = ds.clip(0)
    assert not want["reread"]

    def failing(*a, **k):
        raise decord.DECORDError("Thread worker: Error sending packet.")

    monkeypatch.setattr(decord, "VideoReader", failing)
    got = ds.clip(0)
    assert got["reread"] and torch.equal(got["video"], want["video"])


@pytest.mark.parametrize("workers", [0, 2])
def test_eval_clips_stop_with_one_line_naming_the_file(tmp_path, workers):
    gray_video(tmp_path / "src" / "a.mp4", 20, size=(32, 32))
    gray_video(tmp_path / "src" / "b.mp4", 20, size=(32, 32))
    prepare_dataset("ffs", tmp_path / "src", tmp_path / "prep", progress=False, **SMALL)
    spoil(tmp_path / "src" / "b.mp4")
    with pytest.raises(UserError) as exc:
        list(eval_clips(tmp_path / "prep", 4, num_frames=4, frame_interval=2, size=16, batch_size=2,
                        num_workers=workers))
    message = str(exc.value)
    assert message.startswith("FVD's real clips: cannot read b.mp4: ") and "\n" not in message


# ------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """8 synthetic videos (2 classes), prepared, then one of them spoiled: the manifest calls it ok."""
    out = tmp_path_factory.mktemp("prep")
    opts = dict(num_classes=2, videos_per_class=4, frames=12, width=32, height=32, fps=8, seed=0)
    df = prepare_dataset("synthetic", None, out, num_frames=4, frame_interval=2, synthetic_options=opts,
                         progress=False)
    spoil(out / "source" / df["path"][2])
    return out, df["path"][2]


def config(data, run_dir, **kw):
    base = dict(data=str(data), run_dir=str(run_dir), model_builder=BUILDER, batch=2, steps=6, num_frames=4,
                frame_interval=2, image_size=32, vae="identity", precision="fp32", device="cpu", num_workers=0,
                ckpt_every=2, log_every=1, seed=1, class_dropout=0.0)
    base.update(kw)
    return T.TrainConfig(**base)


def test_training_substitutes_the_same_clips_with_any_workers_and_across_a_resume(prepared, tmp_path, capsys):
    data, bad_path = prepared
    T.train(config(data, tmp_path / "w0"))  # 8 clips / batch 2: 4 steps an epoch, so the bad one is met
    err = capsys.readouterr().err
    assert f"warning: step 1: cannot read {bad_path} (InvalidDataError" in err and "allows 1)" in err
    T.train(config(data, tmp_path / "w2", num_workers=2))
    assert_bitwise_equal(final_state(tmp_path / "w0"), final_state(tmp_path / "w2"))
    T.train(config(data, tmp_path / "resumed", steps=3, num_workers=2))
    T.train(config(data, tmp_path / "resumed"), resume=True)
    assert_bitwise_equal(final_state(tmp_path / "resumed"), final_state(tmp_path / "w0"))
    records = [json.loads((tmp_path / r / "records" / "train.json").read_text())["bad_videos"]
               for r in ("w0", "w2", "resumed")]
    first = records[0]
    assert first["count"] == 1 and first["allowed"] == 1 and first["of_videos"] == 8
    [video] = first["videos"]
    assert video["path"] == bad_path and video["reason"].startswith("InvalidDataError: ")
    assert video["first_step"] == 1 and video["reads"] == first["samples_substituted"] == 2  # once an epoch
    for rec in records[1:]:
        assert {k: rec[k] for k in ("count", "videos", "samples_substituted")} == {
            k: first[k] for k in ("count", "videos", "samples_substituted")}


def test_substitutes_depend_on_seed_and_position_only():
    a = T.substitutes(100, 7, seed=3, position=41)
    assert a == T.substitutes(100, 7, seed=3, position=41) and 7 not in a and len(a) == T.SUBSTITUTE_TRIES
    assert a != T.substitutes(100, 7, seed=3, position=42) and a != T.substitutes(100, 7, seed=4, position=41)
    assert sorted(T.substitutes(3, 0, seed=0, position=0)) == [1, 2]


def test_more_unreadable_videos_than_the_budget_stop_with_one_line(prepared, tmp_path):
    data, bad_path = prepared
    with pytest.raises(UserError) as exc:
        T.train(config(data, tmp_path / "run", max_bad_videos=0.0))
    message = str(exc.value)
    assert message.startswith(f"1 videos could not be read, more than --max-bad-videos 0.0 allows (0 of 8): {bad_path}")
    assert "\n" not in message and "--check full" in message
    code = (f"import sys; sys.argv = ['matten-bench', 'train', '--data', {str(data)!r}, '--run-dir', "
            f"{str(tmp_path / 'cli')!r}, '--max-bad-videos', '0', '--frames', '4', '--frame-interval', '2', "
            "'--image-size', '32', '--batch', '2', '--steps', '6', '--num-workers', '0', '--device', 'cpu', "
            f"'--precision', 'fp32', '--model-builder', {BUILDER!r}]; from harness.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and bad_path in lines[0] and "Traceback" not in proc.stderr


def test_the_model_is_sized_from_the_first_readable_clip(prepared, monkeypatch):
    data, _ = prepared
    ds = ClipDataset(data, num_frames=4, frame_interval=2, size=32, uint8=True)
    real = ds.clip
    monkeypatch.setattr(ds, "clip", lambda i, epoch=None: (_ for _ in ()).throw(UnreadableVideo("x", "y"))
                        if i == 0 else real(i, epoch))
    assert T._first_readable(ds)["index"] == 1


def _ddp_worker(rank, port, data, run):
    import os

    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    T.train(config(data, run, steps=2, batch=2, ckpt_every=1))
    torch.distributed.destroy_process_group()


def test_two_processes_substitute_and_count_as_one_process_with_the_double_batch(prepared, tmp_path):
    """Each process meets its own unreadable reads; their notes are merged, so the record (and the weights)
    are those of one process with the global batch."""
    import socket

    data, bad_path = prepared
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(data), str(tmp_path / "ddp")), nprocs=2, join=True)
    T.train(config(data, tmp_path / "single", steps=2, batch=4, ckpt_every=1))  # 8 videos: the whole epoch
    a, b = final_state(tmp_path / "ddp"), final_state(tmp_path / "single")
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=1e-5, atol=1e-6)
    assert a["bad_videos"] == b["bad_videos"] and list(a["bad_videos"]["videos"]) == [bad_path]
    records = [json.loads((tmp_path / r / "records" / "train.json").read_text())["bad_videos"]
               for r in ("ddp", "single")]
    assert records[0] == records[1] and records[0]["samples_substituted"] == 1


def test_windows_decord_fails_on_train_the_same_weights_and_are_named(prepared, tmp_path, monkeypatch, capsys):
    """decord failing on a readable video (as its read-ahead does near damage) changes nothing but the record."""
    data, _ = prepared
    T.train(config(data, tmp_path / "plain", steps=4))
    flaky = "UCF-101/MoveB/v_MoveB_g01_c01.mp4"
    real = decord.VideoReader

    def reader(path, *a, **k):
        if path.endswith(flaky):
            raise decord.DECORDError("Thread worker: Error sending packet.")
        return real(path, *a, **k)

    monkeypatch.setattr(decord, "VideoReader", reader)
    capsys.readouterr()
    T.train(config(data, tmp_path / "flaky", steps=4))
    assert_bitwise_equal(final_state(tmp_path / "flaky"), final_state(tmp_path / "plain"))
    assert f"decord failed on a window of {flaky}, which FFmpeg (PyAV) then read" in capsys.readouterr().err
    rec = json.loads((tmp_path / "flaky" / "records" / "train.json").read_text())["bad_videos"]
    assert rec["reread_videos"] == {flaky: rec["windows_reread_by_pyav"]} and rec["windows_reread_by_pyav"] >= 1
