"""compute_fvd end to end: the number orders motion classes, the record traces it, real statistics are cached,
and bad input is one line with exit code 2."""

import json
import sys
import types

import numpy as np
import pytest
from fvd_helpers import StandInDetector, cached_weights, moving_square_clips

from harness.config import FVDConfig
from harness.fvd.frechet import FeatureStats, bootstrap_fvd, fvd_from_stats
from harness.fvd.protocol import Extractor, compute_fvd, real_floor
from harness.samples import write_shard


def fvd(real, fake, num=2048, **kw):
    """compute_fvd on an FVDConfig, the stage's one argument."""
    return compute_fvd(FVDConfig(real=str(real), fake=str(fake), num=num, **kw))


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


@pytest.fixture
def stand_ins(monkeypatch, tmp_path):
    """A cheap detector instead of I3D, and harness.data's eval_clips contract served from memory."""
    monkeypatch.setenv("MATTEN_BENCH_CACHE", str(tmp_path / "cache"))
    from harness.fvd import weights

    detector = {"kind": "stand-in", "sha256": STAND_IN_SHA}
    monkeypatch.setattr(weights, "load_i3d", lambda path=None, device="cpu": (StandInDetector(), detector))
    calls = []
    real = moving_square_clips(8, seed=0, motion="glide", size=224)  # 224: no resize, keeps these tests quick

    def eval_clips(prepared_dir, num, *, seed=0, num_frames=16, frame_interval=3, size=256, batch_size=16):
        calls.append(dict(num=num, seed=seed, frame_interval=frame_interval))
        for i in range(0, num, batch_size):
            yield real[i : min(i + batch_size, num)]

    clips_mod = types.ModuleType("harness.data.clips")
    clips_mod.eval_clips = eval_clips
    manifest_mod = types.ModuleType("harness.data.manifest")
    manifest_mod.manifest_fingerprint = lambda prepared_dir: "fp-test"
    monkeypatch.setitem(sys.modules, "harness.data", types.ModuleType("harness.data"))
    monkeypatch.setitem(sys.modules, "harness.data.clips", clips_mod)
    monkeypatch.setitem(sys.modules, "harness.data.manifest", manifest_mod)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    samples = tmp_path / "samples"
    write_shard(samples, 0, moving_square_clips(3, seed=5, motion="jump", size=224))
    write_shard(samples, 1, moving_square_clips(3, seed=6, motion="jump", size=224))
    return types.SimpleNamespace(calls=calls, real=real, prepared=prepared, samples=samples, tmp=tmp_path)


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
    from_file = fvd(rec["real"]["real_stats"], s.samples, num=5, device="cpu")
    assert from_file["fvd"] == pytest.approx(rec["fvd"], rel=1e-12)


def test_videogpt_protocol_uses_the_unbiased_covariance(stand_ins):
    rec = fvd(stand_ins.prepared, stand_ins.samples, num=4, device="cpu", protocol="videogpt")
    assert rec["protocol"]["name"] == "videogpt" and rec["protocol"]["covariance"] == "unbiased (1/(N-1))"


# ----------------------------------------------------------------------------- CLI: one line, exit code 2


def run_cli(args, capsys):
    from harness.cli import main

    old = sys.argv
    sys.argv = ["matten-bench", *args]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = old
    err = capsys.readouterr().err
    return exc.value.code, " ".join(err.split())


def test_cli_prints_the_fvd_and_writes_the_record(stand_ins, capsys):
    from typer.testing import CliRunner

    from harness.cli import app

    rec = fvd(stand_ins.prepared, stand_ins.samples, num=4, device="cpu")
    stats = rec["real"]["real_stats"]
    out = stand_ins.tmp / "rec.json"
    args = ["fvd", "--real", stats, "--fake", str(stand_ins.samples), "--num", "4", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(rec["fvd"], rel=1e-6)
    assert json.loads(out.read_text())["clips"] == {"real": 4, "generated": 4}


@pytest.mark.parametrize(
    "case, message",
    [
        ("frames", "have 8 frames; this FVD uses 16"),
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
    if case == "frames":
        clips = clips[:, :8]
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
    code, err = run_cli(["fvd", "--real", str(tmp_path), "--fake", str(fake), "--num", "4", *extra], capsys)
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
