"""compute_fvd end to end: the number orders motion classes, the record traces it, real statistics are cached,
and bad input is one line with exit code 2."""

import json
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from fvd_helpers import StandInDetector, cached_weights, moving_square_clips

from harness.clip_shards import write_shard
from harness.config import FVDConfig
from harness.errors import UserError
from harness.fvd.frechet import FeatureStats, bootstrap_fvd, fvd_from_stats
from harness.fvd.protocol import Extractor, compute_fvd, real_floor


def fvd(real, fake, num=2048, size=224, **kw):
    """compute_fvd on an FVDConfig, the stage's one argument (real clips read at 224: the stand-ins' size)."""
    return compute_fvd(FVDConfig(real=str(real), fake=str(fake), num=num, size=size, **kw))


def stats_of(features: np.ndarray) -> FeatureStats:
    s = FeatureStats(features.shape[1])
    s.update(features)
    return s


def test_two_halves_of_one_motion_class_are_far_closer_than_another_class():
    from harness.fvd.weights import load_i3d

    model, _ = load_i3d(cached_weights())
    extract = Extractor(model, "cpu", "stylegan-v", "fp32", batch_size=3)
    glide = extract(moving_square_clips(6, seed=0, motion="glide"))  # (6, 400) logits
    jump = extract(moving_square_clips(3, seed=1, motion="jump"))
    a1, a2, b = stats_of(glide[:3]), stats_of(glide[3:]), stats_of(jump)
    same = fvd_from_stats(a1, a2)
    other = min(fvd_from_stats(a1, b), fvd_from_stats(a2, b))
    assert 0 < same < 0.5 * other, (same, other)


# ----------------------------------------------------------------------------- plumbing, with stand-ins

STAND_IN_SHA = "0" * 64


def write_prepared(folder, frames, *, width=224, height=224, fps=24.0):
    """A prepared dataset's manifest and dataset.json by hand (one "ok" video per entry of ``frames``), with an
    empty source folder: what the checks before the detector read; the clips come from a stand-in eval_clips."""
    from harness.data.manifest import to_frame, write_manifest

    rows = [dict(path=f"v{i:03d}.mp4", kind="video", frames=n, fps=fps, width=width, height=height, label=-1,
                 class_name="", split="none", size=1, mtime_ns=0, fingerprint=f"1-{i}", sha256="", probe_error="",
                 check="quick", rotation=0,
                 status="ok", reason="") for i, n in enumerate(frames)]
    (folder / "source").mkdir(parents=True)
    write_manifest(folder, to_frame(rows), {"dataset": "test", "source": str(folder / "source"), "split": "none"})
    return folder


@pytest.fixture
def stand_ins(monkeypatch, tmp_path):
    """A cheap detector instead of I3D (``loads`` counts how often it is loaded), and harness.data's eval_clips
    contract served from memory (``real``, which a test may replace)."""
    monkeypatch.setenv("MATTEN_BENCH_CACHE", str(tmp_path / "cache"))
    from harness.data import clips as clips_mod
    from harness.data import manifest as manifest_mod
    from harness.fvd import weights

    ns = types.SimpleNamespace(calls=[], loads=[], tmp=tmp_path, detector={"kind": "stand-in", "sha256": STAND_IN_SHA})
    ns.real = moving_square_clips(8, seed=0, motion="glide", size=224)  # 224: no resize, keeps these tests quick

    def load_i3d(path=None, device="cpu"):
        ns.loads.append(path)
        return StandInDetector(), ns.detector

    def eval_clips(prepared_dir, num, *, seed=0, num_frames=16, frame_interval=3, size=256, batch_size=16, **kw):
        ns.calls.append(dict(num=num, seed=seed, frame_interval=frame_interval))
        for i in range(0, num, batch_size):
            yield ns.real[i : min(i + batch_size, num)]

    monkeypatch.setattr(weights, "load_i3d", load_i3d)
    monkeypatch.setattr(clips_mod, "eval_clips", eval_clips)
    monkeypatch.setattr(manifest_mod, "manifest_fingerprint", lambda prepared_dir: "fp-test")
    ns.prepared = write_prepared(tmp_path / "prepared", [48] * 8)
    ns.samples = tmp_path / "samples"
    write_shard(ns.samples, 0, moving_square_clips(3, seed=5, motion="jump", size=224))
    write_shard(ns.samples, 1, moving_square_clips(3, seed=6, motion="jump", size=224))
    return ns


def test_record_traces_the_number_and_real_statistics_are_cached(stand_ins, capsys):
    s = stand_ins
    rec = fvd(s.prepared, s.samples, num=5, device="cpu", frame_interval=2, seed=7, out=s.tmp / "fvd.json")
    assert "rank-deficient" in capsys.readouterr().err  # 5 clips < 400 feature dimensions
    extract = Extractor(StandInDetector(), "cpu", "stylegan-v")
    fake = np.concatenate([moving_square_clips(3, 5, "jump", size=224), moving_square_clips(3, 6, "jump", size=224)])
    expected = fvd_from_stats(stats_of(extract(s.real[:5])), stats_of(extract(fake[:5])))
    assert rec["fvd"] == pytest.approx(expected, rel=1e-6)
    assert json.loads((s.tmp / "fvd.json").read_text())["fvd"] == rec["fvd"]
    assert rec["clips"] == {"real": 5, "generated": 5}
    assert rec["frame_interval_real"] == 2 and rec["seeds"] == {"real_clips": 7}
    assert rec["protocol"]["covariance"] == "population (1/N)"
    assert rec["detector"]["sha256"] == STAND_IN_SHA
    assert rec["real"]["manifest_fingerprint"] == "fp-test" and rec["real"]["cached"] is False
    assert {"torch", "numpy", "scipy", "device", "git_commit"} <= set(rec["environment"])
    assert s.calls == [dict(num=5, seed=7, frame_interval=2)]
    # the 95 % interval: the bootstrap over the same per-clip features, seeded by the real clips' seed
    want = bootstrap_fvd(extract(s.real[:5]), extract(fake[:5]), samples=1000, seed=7)
    assert rec["interval"]["low"] == pytest.approx(want["low"])
    assert rec["interval"]["high"] == pytest.approx(want["high"])
    assert rec["interval"]["low"] < rec["fvd"] < rec["interval"]["high"] and rec["interval"]["samples"] == 1000
    assert fvd(s.prepared, s.samples, num=5, device="cpu", frame_interval=2, seed=7, bootstrap=0)[
        "interval"] is None

    again = fvd(s.prepared, s.samples, num=5, device="cpu", frame_interval=2, seed=7)
    assert again["real"]["cached"] is True and again["fvd"] == rec["fvd"]
    assert again["interval"] == rec["interval"]  # the cache keeps the real clips' features
    assert len(s.calls) == 1  # the real clips were not read again
    fvd(s.prepared, s.samples, num=5, device="cpu", frame_interval=3, seed=7)
    assert len(s.calls) == 2  # another frame interval is another key

    # the cached statistics file is itself a valid --real
    from_file = fvd(rec["real"]["real_stats"], s.samples, num=5, device="cpu", frame_interval=2)
    assert from_file["fvd"] == pytest.approx(rec["fvd"], rel=1e-12)


def test_videogpt_protocol_uses_the_unbiased_covariance(stand_ins):
    rec = fvd(stand_ins.prepared, stand_ins.samples, num=4, device="cpu", protocol="videogpt")
    assert rec["protocol"]["name"] == "videogpt" and rec["protocol"]["covariance"] == "unbiased (1/(N-1))"


# ----------------------------------------------------------------------------- CLI: one line, exit code 2


def run_cli(args, capsys):
    """The CLI's exit code and its stderr (whitespace folded)."""
    code, err, _ = run_cli_out(args, capsys)
    return code, err


def test_cli_prints_the_fvd_and_writes_the_record(stand_ins, capsys):
    from typer.testing import CliRunner

    from harness.cli import app

    rec = fvd(stand_ins.prepared, stand_ins.samples, num=4, device="cpu")
    stats = rec["real"]["real_stats"]
    out = stand_ins.tmp / "rec.json"
    args = ["fvd", "--real", stats, "--fake", str(stand_ins.samples), "--num", "4", "--device", "cpu", "--size", "224"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(rec["fvd"], rel=1e-6)
    assert json.loads(out.read_text())["clips"] == {"real": 4, "generated": 4}


@pytest.mark.parametrize(
    "case, message",
    [
        ("frames", "have 8 frames; this FVD uses 16"),
        ("frames8", "--num-frames 8: I3D needs at least 9 frames"),
        ("float", "expected uint8"),
        ("few", "2 generated clips, but --num asks for 4"),
        ("garbage", "unreadable sample shard"),
        ("protocol", "unknown FVD protocol"),
        ("weights", "I3D weights not found"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(case, message, tmp_path, capsys):
    fake = tmp_path / "fake.npy"
    clips = moving_square_clips(4, seed=0, motion="glide")
    extra = []
    if case in ("frames", "frames8"):
        clips = clips[:, :8]
    if case == "frames8":  # the case: 8-frame clips measured at 8 frames
        extra = ["--num-frames", "8"]
    if case == "float":
        np.save(fake, clips.astype(np.float32))
    elif case == "garbage":
        fake.write_bytes(b"not a numpy file")
    else:
        np.save(fake, clips[:2] if case == "few" else clips)
    if case == "protocol":
        extra = ["--protocol", "fid"]
    if case == "weights":
        extra = ["--i3d", str(tmp_path / "missing.safetensors")]
    real = write_prepared(tmp_path / "prepared", [48] * 4)
    code, err = run_cli(["fvd", "--real", str(real), "--fake", str(fake), "--num", "4", *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err


def test_real_clips_from_a_prepared_synthetic_dataset(tmp_path, monkeypatch):
    """harness.data end to end: synthetic mp4s -> prepare -> eval_clips -> cached real statistics."""
    from harness.data.prepare import prepare_dataset
    from harness.data.synthetic import generate_synthetic
    from harness.fvd import weights

    monkeypatch.setenv("MATTEN_BENCH_CACHE", str(tmp_path / "cache"))
    detector = {"kind": "stand-in", "sha256": STAND_IN_SHA}
    monkeypatch.setattr(weights, "load_i3d", lambda path=None, device="cpu": (StandInDetector(), detector))
    source = generate_synthetic(
        tmp_path / "raw", num_classes=2, videos_per_class=2, frames=48, width=64, height=64, fps=8, seed=0
    )
    prepare_dataset("synthetic", source, tmp_path / "prep", progress=False)
    write_shard(tmp_path / "samples", 0, moving_square_clips(4, seed=0, motion="glide"))
    rec = fvd(tmp_path / "prep", tmp_path / "samples", num=4, device="cpu", size=64)
    assert rec["real"]["cached"] is False and len(rec["real"]["manifest_fingerprint"]) > 0
    again = fvd(tmp_path / "prep", tmp_path / "samples", num=4, device="cpu", size=64)
    assert again["real"]["cached"] is True and again["fvd"] == rec["fvd"]


def test_real_vs_real_floor_uses_the_reference_set_and_a_disjoint_one(tmp_path, monkeypatch):
    """The floor: FVD between the evaluation plan's first N clips (every model's reference set, the same
    features compute_fvd uses) and the next N; disjoint videos when the dataset has 2N of them."""
    from harness.data.clips import eval_clips
    from harness.data.prepare import prepare_dataset
    from harness.data.synthetic import generate_synthetic
    from harness.fvd import weights

    monkeypatch.setenv("MATTEN_BENCH_CACHE", str(tmp_path / "cache"))
    detector = {"kind": "stand-in", "sha256": STAND_IN_SHA}
    monkeypatch.setattr(weights, "load_i3d", lambda path=None, device="cpu": (StandInDetector(), detector))
    source = generate_synthetic(
        tmp_path / "raw", num_classes=2, videos_per_class=3, frames=24, width=32, height=32, fps=8, seed=0
    )
    prepare_dataset("synthetic", source, tmp_path / "prep", num_frames=9, frame_interval=1, progress=False)
    kw = dict(num_frames=9, frame_interval=1, size=32, device="cpu", bootstrap=50)
    rec = real_floor(FVDConfig(real=str(tmp_path / "prep"), num=3, **kw))
    clips = np.concatenate(list(eval_clips(tmp_path / "prep", 6, num_frames=9, frame_interval=1, size=32)))
    extract = Extractor(StandInDetector(), "cpu", "stylegan-v")
    want = fvd_from_stats(stats_of(extract(clips[:3])), stats_of(extract(clips[3:])))
    assert rec["fvd"] == pytest.approx(want, rel=1e-6) and rec["clips"] == {"a": 3, "b": 3}
    assert rec["videos_shared"] == 0  # 6 videos, 2 x 3 clips
    assert rec["interval"]["low"] < rec["fvd"] < rec["interval"]["high"]
    # set A is the reference set of compute_fvd at the same N: its first three clips, the same features
    write_shard(tmp_path / "samples", 0, clips[3:])
    model_fvd = fvd(tmp_path / "prep", tmp_path / "samples", num=3, **kw)
    assert model_fvd["fvd"] == pytest.approx(rec["fvd"], rel=1e-6)
    assert real_floor(FVDConfig(real=str(tmp_path / "prep"), num=4, **kw))["videos_shared"] == 2  # 8 clips, 6 videos


# ----------------------------------------------------------------------------- inputs checked against the protocol


def run_cli_out(args, capsys):
    """The CLI's exit code, its stderr (whitespace folded) and its stdout."""
    from harness.cli import main

    old = sys.argv
    sys.argv = ["matten-bench", *args]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return exc.value.code, " ".join(captured.err.split()), captured.out


def folded_err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_real_videos_too_short_for_the_window_are_refused_before_the_detector_loads(stand_ins, capsys):
    """Videos prepared at interval 1 (20 frames) measured at interval 3, and 48-frame videos at interval 6: no clip
    could keep the interval (they used to be squeezed while the record said 3 or 6)."""
    s = stand_ins
    short = write_prepared(s.tmp / "short", [20] * 4)
    with pytest.raises(UserError, match=r"all 4 usable videos are shorter than the clip window of 48 frames "
                                        r"\(16 frames at interval 3\) \(the shortest has 20\)"):
        fvd(short, s.samples, num=4, device="cpu", frame_interval=3)
    with pytest.raises(UserError, match=r"window of 96 frames \(16 frames at interval 6\)"):
        fvd(s.prepared, s.samples, num=4, device="cpu", frame_interval=6)
    assert s.loads == [] and s.calls == []  # refused before the detector loaded or a real clip was read
    code, err, _ = run_cli_out(["fvd", "--real", str(short), "--fake", str(s.samples), "--num", "4"], capsys)
    assert code == 2 and err.startswith("error: --real") and "Traceback" not in err


def test_some_real_videos_too_short_are_left_out_counted_and_warned(stand_ins, capsys):
    s = stand_ins
    mixed = write_prepared(s.tmp / "mixed", [60, 60, 20, 60])  # 60 frames: 12 windows of 48 each
    rec = fvd(mixed, s.samples, num=4, device="cpu", bootstrap=0)
    warning = "1 of 4 real videos in"
    assert warning in folded_err(capsys)
    assert rec["real"]["too_short"] == 1 and rec["real"]["videos"] == 4 and rec["real"]["window"] == 48
    assert any(w.startswith(warning) and "left out" in w for w in rec["warnings"])
    assert rec["preprocessing"]["real"].endswith("1 videos shorter than the clip window left out")
    full = fvd(s.prepared, s.samples, num=4, device="cpu", bootstrap=0)
    assert full["real"]["too_short"] == 0 and not any("real videos" in w for w in full["warnings"])


def test_short_real_videos_are_left_out_of_the_real_clips_end_to_end(tmp_path, monkeypatch, capsys):
    """A real prepared dataset (decoded clips): the FVD is the one of the clips of the long-enough videos alone."""
    from harness.data.clips import eval_clips
    from harness.data.manifest import load_manifest
    from harness.data.prepare import prepare_dataset
    from harness.data.synthetic import generate_synthetic
    from harness.fvd import weights

    monkeypatch.setenv("MATTEN_BENCH_CACHE", str(tmp_path / "cache"))
    detector = {"kind": "stand-in", "sha256": STAND_IN_SHA}
    monkeypatch.setattr(weights, "load_i3d", lambda path=None, device="cpu": (StandInDetector(), detector))
    source = generate_synthetic(tmp_path / "raw", num_classes=2, videos_per_class=3, frames=(12, 30), width=32,
                                height=32, fps=8, seed=0, progress=False)
    prepare_dataset("synthetic", source, tmp_path / "prep", num_frames=9, frame_interval=1, progress=False)
    lengths = load_manifest(tmp_path / "prep", ok_only=True)["frames"].tolist()
    short = sum(n < 18 for n in lengths)  # 9 frames at interval 2
    assert 0 < short < len(lengths), lengths
    fake = moving_square_clips(4, seed=0, motion="glide", frames=9, size=32)
    write_shard(tmp_path / "samples", 0, fake)
    rec = fvd(tmp_path / "prep", tmp_path / "samples", num=4, num_frames=9, frame_interval=2, size=32, device="cpu",
              bootstrap=0)
    assert rec["real"]["too_short"] == short and f"{short} of {len(lengths)} real videos" in folded_err(capsys)
    real = np.concatenate(list(eval_clips(tmp_path / "prep", 4, num_frames=9, frame_interval=2, size=32,
                                          too_short="skip")))
    extract = Extractor(StandInDetector(), "cpu", "stylegan-v")
    assert rec["fvd"] == pytest.approx(fvd_from_stats(stats_of(extract(real)), stats_of(extract(fake))), rel=1e-6)
    # the floor leaves out the same videos: its two sets are the same four clips, and its plan counts only the rest
    floor = real_floor(FVDConfig(real=str(tmp_path / "prep"), num=2, num_frames=9, frame_interval=2, size=32,
                                 device="cpu", bootstrap=0))
    assert floor["real"]["too_short"] == short and floor["real"]["cached"] is True
    want = fvd_from_stats(stats_of(extract(real[:2])), stats_of(extract(real[2:])))
    assert floor["fvd"] == pytest.approx(want, rel=1e-6)
    assert len(lengths) - short >= 4 and floor["videos_shared"] == 0  # 4 clips of the long-enough videos: one pass


@pytest.mark.parametrize("field, change", [
    ("frame_interval", dict(frame_interval=1)),
    ("size", dict(size=64)),
    ("num_frames", dict(num_frames=9)),
    ("protocol", dict(protocol="videogpt")),
    ("num", dict(num=5)),
    ("precision", dict(precision="bf16")),
    ("weights_sha256", {}),
])
def test_a_statistics_file_is_used_only_when_its_protocol_fields_match(stand_ins, field, change):
    s = stand_ins
    stats = fvd(s.prepared, s.samples, num=4, device="cpu", bootstrap=0)["real"]["real_stats"]
    fake = s.samples
    if field == "num_frames":
        fake = s.tmp / "fake9.npy"
        np.save(fake, moving_square_clips(4, seed=1, motion="jump", frames=9, size=224))
    if field == "weights_sha256":
        s.detector = dict(s.detector, sha256="1" * 64)
    s.loads.clear()
    with pytest.raises(UserError, match=rf"fvd-real-stats/\w+\.npz: made with {field}=.*, this run uses"):
        fvd(stats, fake, **dict(dict(num=4, device="cpu"), **change))
    # refused before the detector loads; the detector's hash is known once it has (before any clip goes through)
    assert s.loads == ([None] if field == "weights_sha256" else [])
    assert len(s.calls) == 1


def test_generated_clips_get_the_real_clips_resize_and_centre_crop(stand_ins, capsys):
    """The issue's case: the real 4:3 videos fed back as "generated" clips scored far from themselves, because
    the generated clips were squashed to a square while the real ones were cropped. Now both sides get
    the same short-side resize and centre crop: the same videos score as their cropped squares do, ~0."""
    from harness.data.clips import resize_center_crop

    s = stand_ins
    raw = np.random.default_rng(0).integers(0, 256, (4, 16, 60, 80, 3), dtype=np.uint8)  # 80x60: 4:3
    s.real = np.stack([resize_center_crop(c, 224).permute(0, 2, 3, 1).numpy() for c in raw])  # the reader's clips
    squashed = np.stack([resize_center_crop(c, 224, crop="none").permute(0, 2, 3, 1).numpy() for c in raw])
    for name, clips in (("raw", raw), ("squares", s.real), ("squashed", squashed)):
        np.save(s.tmp / f"{name}.npy", clips)
    rec = fvd(s.prepared, s.tmp / "raw.npy", num=4, device="cpu", bootstrap=0)
    err = folded_err(capsys)
    assert "the generated clips are 80x60 (width x height) (not square" in err and "centre crop" in err
    assert "80x60: short side to 224" in rec["preprocessing"]["generated"]
    assert rec["preprocessing"]["real"].startswith("short side to 224")
    assert rec["generated_clips"]["shape"] == [16, 60, 80]
    assert any("80x60" in w for w in rec["warnings"])
    squares = fvd(s.prepared, s.tmp / "squares.npy", num=4, device="cpu", bootstrap=0)
    assert rec["fvd"] == squares["fvd"]  # the detector saw the same pixels
    assert squares["preprocessing"]["generated"].startswith("224x224, as the real clips are read: nothing")
    off = fvd(s.prepared, s.tmp / "squashed.npy", num=4, device="cpu", bootstrap=0)
    assert abs(rec["fvd"]) < 1e-3 * off["fvd"], (rec["fvd"], off["fvd"])


@pytest.mark.parametrize("case, message", [
    ("zero", "generated clips checked are zero (black)"),
    ("unit", "is 0 or 1: floats in [0, 1] cast to uint8 without scaling by 255?"),
    ("flat", "generated clips checked are one flat colour"),
])
def test_degenerate_generated_clips_are_warned_about_before_the_detector_loads(stand_ins, case, message):
    from harness.fvd.protocol import check_inputs

    s = stand_ins
    good = moving_square_clips(4, seed=3, motion="jump", size=224)
    clips = {"zero": np.zeros_like(good), "unit": (good / 255.0).astype(np.uint8),  # 255 -> 1, the rest 0
             "flat": np.full_like(good, 128)}[case]
    np.save(s.tmp / "fake.npy", clips)
    warnings = []
    check_inputs(FVDConfig(real=str(s.prepared), fake=str(s.tmp / "fake.npy"), num=4, size=224, device="cpu"),
                 warnings)
    assert [w for w in warnings if message in w] and s.loads == []
    rec = fvd(s.prepared, s.tmp / "fake.npy", num=4, device="cpu", bootstrap=0)
    assert sum(message in w for w in rec["warnings"]) == 1 and rec["generated_clips"]["range"].startswith("not")


def test_generated_clips_far_outside_the_real_range_are_warned_about(stand_ins, capsys):
    s = stand_ins
    dark = np.random.default_rng(0).integers(0, 12, (4, 16, 224, 224, 3), dtype=np.uint8)  # real: grey 96, white
    np.save(s.tmp / "dark.npy", dark)
    rec = fvd(s.prepared, s.tmp / "dark.npy", num=4, device="cpu", bootstrap=0)
    assert "far outside the real clips'" in folded_err(capsys)
    assert rec["generated_clips"]["range"].startswith("far outside")
    assert rec["real"]["pixels"]["clips"] == 4 and 90 < rec["real"]["pixels"]["mean"] < 120
    fine = fvd(s.prepared, s.samples, num=4, device="cpu", bootstrap=0)  # moving squares on both sides
    assert fine["generated_clips"]["range"] == "within the real clips' range"
    assert fine["real"]["cached"] and fine["real"]["pixels"] == rec["real"]["pixels"]  # kept with the cache
    assert [w for w in fine["warnings"] if "rank-deficient" not in w] == []


def test_the_two_sides_frame_rates_and_resolutions_are_compared(stand_ins, capsys):
    s = stand_ins

    def with_sample_record(**clips):
        (s.samples / "records").mkdir(exist_ok=True)
        trained = dict(num_frames=16, frame_interval=3, image_size=224, data=str(s.prepared), latent_cache=None)
        (s.samples / "records" / "sample.json").write_text(json.dumps({"protocol": {"clips": dict(trained, **clips)}}))
        return fvd(s.prepared, s.samples, num=4, device="cpu", bootstrap=0)

    rec = fvd(s.prepared, s.samples, num=4, device="cpu", bootstrap=0)
    assert rec["frame_rates"]["real"] == {"frame_interval": 3, "video_fps": 24.0, "clip_fps": 8.0}
    assert rec["frame_rates"]["generated"].startswith("unknown: no sample record")
    assert with_sample_record()["frame_rates"]["generated"]["clip_fps"] == 8.0
    assert "frame rates differ" not in folded_err(capsys)
    rec = with_sample_record(frame_interval=1)  # trained on the same videos at interval 1: 24 frames/s vs 8
    assert "trained on clips at 24 frames/s (24 fps videos at interval 1), the real clips are 8 frames/s" in \
        folded_err(capsys) and any("frame rates differ" in w for w in rec["warnings"])
    train_data = write_prepared(s.tmp / "train-data", [48] * 2, fps=12.0)  # trained on 12 fps videos, interval 3
    with_sample_record(data=str(train_data))
    assert "trained on clips at 4 frames/s" in folded_err(capsys)
    with_sample_record(data=None, frame_interval=2)  # the training videos unknown: the intervals are compared
    assert "trained on clips at frame interval 2 (sample record), the real clips are taken at interval 3" in \
        folded_err(capsys)
    small = write_prepared(s.tmp / "small", [48] * 4, width=32, height=32)
    fvd(small, s.tmp / "samples" / "clips" / "clips-00000.npy", num=3, device="cpu", bootstrap=0)
    assert "the real videos are 32x32, upscaled to 224x224; the generated clips are 224x224" in folded_err(capsys)


# ----------------------------------------------------------------------------- a read-only cache, an unwritable --out


@pytest.fixture
def read_only(monkeypatch, request):
    """Make a folder read-only (mode 0o555). Root ignores permission bits, so as root the two calls that create
    files and folders (``tempfile.mkstemp``, ``Path.mkdir``) refuse inside it as the kernel would for anyone else."""
    folders = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        folders.append(folder)
        return folder

    def inside(path) -> bool:
        return any(Path(path).resolve().is_relative_to(f.resolve()) for f in folders)

    if os.geteuid() == 0:
        real_mkstemp, real_mkdir = tempfile.mkstemp, Path.mkdir

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and inside(dir):
                raise PermissionError(13, "Permission denied", str(dir))
            return real_mkstemp(*args, dir=dir, **kwargs)

        def mkdir(self, *args, **kwargs):
            if inside(self) and not self.exists():
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(Path, "mkdir", mkdir)
    request.addfinalizer(lambda: [f.chmod(0o755) for f in folders])
    return make


def test_a_read_only_cache_gives_the_fvd_with_a_warning(stand_ins, read_only, monkeypatch, capsys):
    s = stand_ins
    want = fvd(s.prepared, s.samples, num=4, device="cpu", bootstrap=0)["fvd"]  # with the writable cache
    monkeypatch.setenv("MATTEN_BENCH_CACHE", str(read_only(s.tmp / "ro-cache")))
    capsys.readouterr()
    rec = fvd(s.prepared, s.samples, num=4, device="cpu", bootstrap=0)
    assert rec["fvd"] == pytest.approx(want, rel=1e-12)
    assert rec["real"]["cached"] is False and rec["real"]["real_stats"] is None and rec["real"]["cache_error"]
    assert "the real statistics could not be cached in" in folded_err(capsys)
    assert any("could not be cached" in w for w in rec["warnings"])
    args = ["fvd", "--real", str(s.prepared), "--fake", str(s.samples), "--num", "4", "--size", "224",
            "--device", "cpu", "--bootstrap", "0"]
    code, err, out = run_cli_out(args, capsys)
    assert code == 0 and "could not be cached" in err and "Traceback" not in err
    assert float(out.strip().splitlines()[-1]) == pytest.approx(want, rel=1e-6)


def test_an_out_that_cannot_be_written_is_one_line_before_any_work(stand_ins, read_only, capsys):
    s = stand_ins
    blocker = s.tmp / "file.txt"
    blocker.write_text("not a folder")
    locked = read_only(s.tmp / "locked")
    cases = [(blocker / "rec.json", "file.txt is not a folder"), (locked / "rec.json", "cannot write in"),
             (locked / "new" / "rec.json", "cannot write in"), (s.tmp, "is a folder")]
    for out, message in cases:
        args = ["fvd", "--real", str(s.prepared), "--fake", str(s.samples), "--num", "4", "--size", "224",
                "--device", "cpu", "--out", str(out)]
        code, err, _ = run_cli_out(args, capsys)
        assert code == 2 and err.startswith("error: --out") and message in err and "Traceback" not in err, err
    assert s.loads == [] and s.calls == []
    assert list(locked.iterdir()) == []  # the probe left nothing behind
