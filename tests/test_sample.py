"""Sampling from a real training checkpoint: shards, resumption, mp4 files and the contact sheet."""

import json

import av
import numpy as np
import pytest
import torch
from PIL import Image

from harness import sample as S
from harness import train as T
from harness.clip_shards import iter_shards
from harness.config import SampleConfig
from harness.diffusion import NUM_TIMESTEPS
from harness.errors import UserError
from tests.test_train import config, make_latent_cache


def sample(checkpoint, out, **kw):
    """harness.sample.sample on a SampleConfig, the stage's one argument."""
    return S.sample(SampleConfig(checkpoint=checkpoint, out=out, **kw))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    data = make_latent_cache(root / "data", t=3, hw=8)
    T.train(config(data, root / "run", steps=1, ckpt_every=1))
    return root / "run"


def test_sample_writes_shards_mp4_and_sheet_and_resumes(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "samples"
    rec = sample(checkpoint, out, num=5, batch_size=2, steps=4, device="cpu")
    assert rec["status"] == "complete" and rec["shards_written"] == 3 and rec["config"]["cfg_scale"] == 7.0
    # what fvd compares with the real clips: the clips the model was trained on (from the checkpoint's config)
    # (a latent cache written without a clip description: its frame interval and source are not known)
    trained = rec["protocol"]["clips"]
    assert trained["num_frames"] == 3 and trained["latent_cache"].endswith("data")
    assert trained["frame_interval"] is None and trained["data"] is None
    clips = np.concatenate(list(iter_shards(out)))
    assert clips.shape == (5, 3, 8, 8, 3) and clips.dtype == np.uint8
    with av.open(str(out / "videos" / "sample-00004.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (8, 8, 3)
    assert np.abs(frames[0].astype(int) - clips[4, 0].astype(int)).mean() < 40  # lossy, but the same picture
    with Image.open(out / "contact_sheet.png") as img:
        # all 5 clips from 3 shards of 2, 3 frames of 8x8 scaled 21x (to >= 512 px), a 64-px column of class
        # labels on the left and a 16-px title strip on top
        assert img.format == "PNG" and img.size == (64 + 3 * 8 * 21, 16 + 5 * 8 * 21)

    # resume: delete one shard and its record; only that shard is regenerated, identically
    first = np.load(out / "clips" / "clips-00001.npy")
    (out / "clips" / "clips-00001.npy").unlink()
    (out / "records" / "sample.json").unlink()
    rec2 = sample(checkpoint, out, num=5, batch_size=2, steps=4, device="cpu")
    assert rec2["shards_written"] == 1 and rec2["shards_skipped"] == 2
    assert np.array_equal(np.load(out / "clips" / "clips-00001.npy"), first)
    assert json.loads((out / "records" / "sample.json").read_text())["status"] == "complete"


def test_ddim_sampling_is_seeded(checkpoint, tmp_path):
    a = sample(checkpoint, tmp_path / "a", num=2, batch_size=2, sampler="ddim", steps=5, mp4=False, device="cpu")
    sample(checkpoint, tmp_path / "b", num=2, batch_size=2, sampler="ddim", steps=5, mp4=False, device="cpu")
    assert a["config"]["sampler"] == "ddim"
    assert np.array_equal(np.load(tmp_path / "a/clips/clips-00000.npy"), np.load(tmp_path / "b/clips/clips-00000.npy"))
    model, state, _ = S.load_sampling_model(checkpoint)
    assert all(torch.equal(model.state_dict()[k], state["ema"][k]) for k in state["ema"])


@pytest.mark.parametrize("steps", [0, NUM_TIMESTEPS + 1])
def test_sampling_steps_out_of_range_is_a_user_error(steps, tmp_path):
    # checked before the checkpoint is even opened: one line and exit code 2, not a ValueError from respacing
    with pytest.raises(UserError, match="--steps must be between 1 and 1000"):
        sample(tmp_path / "no-run", tmp_path / "out", num=1, steps=steps, device="cpu")


def test_sampling_on_cuda_without_a_gpu_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="--device cuda but torch sees no GPU"):
        sample(tmp_path / "no-run", tmp_path / "out", num=1, device="cuda")


def test_the_record_says_which_weights_and_timesteps(checkpoint, tmp_path):
    """EMA (with its schedule) or the raw weights; Latte's timesteps by default, one step allowed (t = 0)."""
    ema = sample(checkpoint, tmp_path / "ema", num=1, batch_size=1, sampler="ddim", steps=1, mp4=False, device="cpu")
    assert ema["config"]["weights"] == "ema" and ema["config"]["spacing"] == "iddpm"
    assert ema["config"]["ema_schedule"]["formula"] == "min(decay, (1 + n) / (10 + n))"
    assert ema["config"]["ema_schedule"]["last_decay"] == 0.1  # one step: the first update's d_0 = 1/10
    assert ema["protocol"]["model_timesteps_first"] == [0] and ema["protocol"]["model_timesteps_last"] == 0
    raw = sample(checkpoint, tmp_path / "raw", num=1, batch_size=1, sampler="ddim", steps=50, use_ema=False,
                   mp4=False, device="cpu")
    assert raw["config"]["weights"] == "model" and raw["config"]["ema_schedule"] is None
    assert raw["protocol"]["model_timesteps_first"] == [999, 979, 958, 938, 917]
    stride = sample(checkpoint, tmp_path / "stride", num=1, batch_size=1, sampler="ddim", steps=50,
                      spacing="ddim-stride", mp4=False, device="cpu")
    assert stride["protocol"]["model_timesteps_first"][:2] == [980, 960]
    with pytest.raises(UserError, match="--steps 999 --spacing ddim-stride: cannot take exactly 999"):
        sample(checkpoint, tmp_path / "bad", num=1, steps=999, spacing="ddim-stride", device="cpu")


def test_a_checkpoint_from_before_the_warmup_is_described_as_lattes_recipe():
    old = {"config": {"ema_decay": 0.9999}}  # no "ema_schedule": written before the warm-up existed
    assert S.ema_schedule_of(old)["warmup"] is False and S.ema_schedule_of(old)["decay"] == 0.9999


def test_trained_clips_come_from_the_latent_cache_when_the_model_saw_one(tmp_path):
    state = {"config": {"data": str(tmp_path / "prep"), "num_frames": 16, "frame_interval": 3, "image_size": 256},
             "model_args": {"num_frames": 16}}
    assert S.trained_clips(state) == {"num_frames": 16, "frame_interval": 3, "image_size": 256,
                                      "data": str(tmp_path / "prep"), "latent_cache": None}
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "latent_cache.json").write_text(json.dumps({"source": "/data/prep", "clip": {"frame_interval": 1,
                                                                                           "size": 128}}))
    state["config"]["data"] = str(cache)  # the config's own clip options are not what the cache holds
    assert S.trained_clips(state) == {"num_frames": 16, "frame_interval": 1, "image_size": 128, "data": "/data/prep",
                                      "latent_cache": str(cache)}


def test_clip_denoised_is_recorded_and_refused_for_latents(checkpoint, tmp_path):
    """``--clip-denoised`` is part of the sample record (so an FVD names it), and refused for a latent VAE:
    latents do not lie in [-1, 1]."""
    kw = dict(num=2, batch_size=2, sampler="ddim", steps=5, mp4=False, device="cpu")
    on = sample(checkpoint, tmp_path / "on", clip_denoised=True, **kw)
    off = sample(checkpoint, tmp_path / "off", **kw)
    assert on["config"]["clip_denoised"] is True and off["config"]["clip_denoised"] is False
    assert on["protocol"]["clip_denoised"] is True
    with pytest.raises(UserError, match="--clip-denoised clamps x_0 to the pixels' range"):
        sample(checkpoint, tmp_path / "sd", clip_denoised=True, vae="sd-v1-4:/nowhere", **kw)


def test_a_folder_of_samples_made_with_other_options_is_refused_or_remade(checkpoint, tmp_path):
    """A helper's case: sampling again into the same folder with --clip-denoised kept the unclamped shards and
    recorded the clamp. Now the CLI refuses, naming what differs; `run` (replace_stale) remakes them."""
    kw = dict(num=2, batch_size=2, sampler="ddim", steps=5, mp4=False, device="cpu")
    out = tmp_path / "s"
    sample(checkpoint, out, **kw)
    with pytest.raises(UserError, match=r"holds samples made with other options \(clip_denoised: False -> True\)"):
        sample(checkpoint, out, clip_denoised=True, **kw)
    rec = S.sample(SampleConfig(checkpoint=checkpoint, out=out, clip_denoised=True, **kw), replace_stale=True)
    assert rec["config"]["clip_denoised"] is True and rec["shards_written"] == 1 and rec["shards_skipped"] == 0
    sample(checkpoint, tmp_path / "fresh", clip_denoised=True, **kw)
    assert np.array_equal(np.load(out / "clips/clips-00000.npy"), np.load(tmp_path / "fresh/clips/clips-00000.npy"))
    more = sample(checkpoint, out, clip_denoised=True, **{**kw, "num": 4})  # more clips, same options: kept
    assert more["shards_skipped"] == 1 and more["shards_written"] == 1
    # a folder sampled before the option existed (its record has no clip_denoised) made its samples unclamped
    old = tmp_path / "old"
    sample(checkpoint, old, **kw)
    rec_path = old / "records" / "sample.json"
    rec = json.loads(rec_path.read_text())
    del rec["config"]["clip_denoised"]
    rec_path.write_text(json.dumps(rec))
    assert sample(checkpoint, old, **{**kw, "num": 4})["shards_skipped"] == 1
    with pytest.raises(UserError, match=r"clip_denoised: False -> True"):
        sample(checkpoint, old, clip_denoised=True, **kw)


def _folder(out):
    """{relative path: bytes} of a samples folder's clips and videos."""
    files = [p for sub in ("clips", "videos") for p in sorted((out / sub).glob("*"))]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files}


@pytest.mark.parametrize("first, then", [(3, 6), (6, 3), (4, 6)])
def test_another_count_into_a_folder_gives_the_folder_a_fresh_run_of_that_count_would(checkpoint, tmp_path, first,
                                                                                       then):
    """A new user's case: --num 4 then --num 20 into one folder kept the 4-clip first shard as whole (8 clips
    where 20 were asked; with mp4s on, an IndexError). A shard of another length is remade with its videos, and
    shards and videos past a smaller count are removed: the folder equals a fresh run's, byte for byte."""
    kw = dict(batch_size=4, sampler="ddim", steps=3, device="cpu", contact_sheet=0)
    out = tmp_path / "s"
    sample(checkpoint, out, num=first, **kw)
    rec = sample(checkpoint, out, num=then, **kw)
    sample(checkpoint, tmp_path / "fresh", num=then, **kw)
    assert _folder(out) == _folder(tmp_path / "fresh")
    assert sum(len(c) for c in iter_shards(out)) == then and len(list((out / "videos").glob("*.mp4"))) == then
    whole_kept = min(first, then) // 4  # shards of 4 that both counts fill
    assert rec["shards_skipped"] == whole_kept and rec["shards_written"] == -(-then // 4) - whole_kept


def test_sampling_again_with_the_same_options_reuses_the_folder_and_says_so(checkpoint, tmp_path, capsys):
    kw = dict(num=2, batch_size=2, sampler="ddim", steps=3, device="cpu")
    out = tmp_path / "s"
    sample(checkpoint, out, **kw)
    def stamps():
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".matten-bench.lock"}

    before = stamps()
    capsys.readouterr()
    rec = sample(checkpoint, out, **kw)
    assert rec["status"] == "reused" and "nothing written" in " ".join(capsys.readouterr().err.split())
    assert stamps() == before
    # the videos asked for now, the clips already there: written, the shards kept
    (out / "videos" / "sample-00001.mp4").unlink()
    rec = sample(checkpoint, out, **kw)
    assert rec["status"] == "complete" and rec["shards_skipped"] == 1 and (out / "videos/sample-00001.mp4").exists()


def test_mp4s_of_another_frame_rate_are_refused_not_kept_under_the_new_one(checkpoint, tmp_path):
    kw = dict(num=2, batch_size=2, sampler="ddim", steps=3, device="cpu")
    out = tmp_path / "s"
    assert sample(checkpoint, out, fps=4, **kw)["mp4_fps"] == 4
    with pytest.raises(UserError, match="holds mp4s at 4 fps, not --fps 8"):
        sample(checkpoint, out, fps=8, **kw)
    with av.open(str(out / "videos" / "sample-00000.mp4")) as c:
        assert c.streams.video[0].average_rate == 4
    assert sample(checkpoint, out, fps=8, mp4=False, **kw)["status"] == "reused"  # no videos asked: nothing to mix
    # a run without videos keeps the frame rate of those already in the folder on record
    assert sample(checkpoint, out, fps=8, mp4=False, **{**kw, "num": 3})["mp4_fps"] == 4
    with pytest.raises(UserError, match="holds mp4s at 4 fps"):
        sample(checkpoint, out, fps=8, **{**kw, "num": 3})


@pytest.mark.parametrize("option, message", [
    (dict(fps=0), "--fps 0: must be at least 1"),
    (dict(fps=-5), "--fps -5: must be at least 1"),
    (dict(contact_sheet=-1), "--contact-sheet -1: must be at least 0"),
    (dict(eta=0.5), "--eta 0.5 is DDIM's; --sampler ddpm has none"),
])
def test_sampling_options_with_no_meaning_are_one_line_errors(tmp_path, option, message):
    """Before, --fps -5 ended in PyAV's traceback, --fps 0 wrote 24-fps videos, and --eta with DDPM or a negative
    --contact-sheet were ignored without a word."""
    with pytest.raises(UserError, match=message):
        SampleConfig(checkpoint=str(tmp_path), out=str(tmp_path / "o"), **option)


def test_a_sampling_killed_after_trimming_or_writing_mp4s_leaves_nothing_a_rerun_mistakes(checkpoint, tmp_path,
                                                                                         monkeypatch):
    """A second helper's cases: a job killed (1) after removing the shards past a smaller --num but before its
    record changed left a "complete" record of 8 clips over 2, which the next call reused; (2) after writing some
    mp4s at --fps 4 left a record without the frame rate, and --fps 8 then mixed the two; (3) a shard deleted by
    hand was "reused"."""
    kw = dict(batch_size=2, sampler="ddim", steps=3, device="cpu", contact_sheet=0)
    out = tmp_path / "s"
    sample(checkpoint, out, num=8, mp4=False, **kw)
    real_sampler = S.sample_video

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "sample_video", killed)
    with pytest.raises(KeyboardInterrupt):  # --num 3 keeps shard 0, trims 2-3, dies remaking shard 1 (1 clip)
        sample(checkpoint, out, num=3, mp4=False, **kw)
    assert json.loads((out / "records" / "sample.json").read_text())["status"] == "running"
    monkeypatch.setattr(S, "sample_video", real_sampler)
    again = sample(checkpoint, out, num=8, mp4=False, **kw)
    assert again["status"] == "complete" and again["shards_written"] == 2  # 2-3 trimmed; 0-1 whole
    sample(checkpoint, tmp_path / "fresh", num=8, mp4=False, **kw)
    assert _folder(out) == _folder(tmp_path / "fresh")

    (out / "clips" / "clips-00002.npy").unlink()  # (3)
    assert sample(checkpoint, out, num=8, mp4=False, **kw)["shards_written"] == 1

    videos = tmp_path / "v"  # (2)
    calls = []
    real_write = S.write_video

    def dies_at_the_second(path, frames, fps):
        calls.append(fps)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(path, frames, fps)

    monkeypatch.setattr(S, "write_video", dies_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        sample(checkpoint, videos, num=4, fps=4, **kw)
    monkeypatch.setattr(S, "write_video", real_write)
    with pytest.raises(UserError, match="holds mp4s at 4 fps, not --fps 8"):
        sample(checkpoint, videos, num=4, fps=8, **kw)


def test_files_of_other_names_are_left_alone_and_the_sheet_follows_the_clips(checkpoint, tmp_path):
    """Stray names in clips/ and videos/ ended a trim in a ValueError; a sheet of removed clips stayed, and a
    rerun asking for a sheet was "reused" without one."""
    kw = dict(batch_size=2, sampler="ddim", steps=3, device="cpu")
    out = tmp_path / "s"
    sample(checkpoint, out, num=6, contact_sheet=6, **kw)
    (out / "clips" / "clips-backup.npy").write_bytes(b"")
    (out / "videos" / "sample-00005 (copy).mp4").write_bytes(b"")
    sample(checkpoint, out, num=2, contact_sheet=0, **kw)
    assert (out / "clips" / "clips-backup.npy").exists() and (out / "videos" / "sample-00005 (copy).mp4").exists()
    assert not (out / "videos" / "sample-00005.mp4").exists() and not (out / "contact_sheet.png").exists()
    rec = sample(checkpoint, out, num=2, contact_sheet=2, **kw)
    assert rec["status"] == "complete" and rec["shards_written"] == 0 and (out / "contact_sheet.png").exists()
    with pytest.raises(UserError, match="--fps 2147483648: at most 1000"):
        SampleConfig(checkpoint=str(out), out=str(out), fps=2**31)


def test_a_shard_cut_short_by_hand_is_remade(checkpoint, tmp_path):
    kw = dict(num=4, batch_size=2, sampler="ddim", steps=3, device="cpu", mp4=False)
    out = tmp_path / "s"
    sample(checkpoint, out, **kw)
    whole = (out / "clips" / "clips-00001.npy").read_bytes()
    (out / "clips" / "clips-00001.npy").write_bytes(whole[:100])
    rec = sample(checkpoint, out, **kw)
    assert rec["shards_written"] == 1 and (out / "clips" / "clips-00001.npy").read_bytes() == whole
