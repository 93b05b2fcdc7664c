"""Training: exact resume (also after SIGKILL), NaN stop, DDP equivalence — on CPU with tiny models."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import train as T
from harness.vae import write_latent_cache

BUILDER = "tests.standin_models:build_model"


def make_latent_cache(path: Path, n=8, t=2, c=3, hw=8, num_classes=3, nan_at=None) -> Path:
    """A finished latent cache written directly (the layout harness.vae.encode_dataset writes)."""
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((n, t, c, hw, hw)).astype(np.float16)
    if nan_at is not None:
        lat[nan_at] = np.nan
    return write_latent_cache(path, lat, np.arange(n) % num_classes, num_classes)


def config(data, run_dir, **kw):
    base = dict(
        data=str(data),
        run_dir=str(run_dir),
        model_builder=BUILDER,
        batch=2,
        steps=6,
        ckpt_every=2,
        log_every=1,
        num_workers=0,
        precision="fp32",
        device="cpu",
        ema_decay=0.9,
        class_dropout=0.5,  # label dropout draws from the global RNG on most steps: a resume must continue its stream
        start_clip_iter=3,
        clip_max_norm=0.05,
        seed=3,
    )
    base.update(kw)
    return T.TrainConfig(**base)


def final_state(run_dir):
    return T.load_checkpoint(T.latest_checkpoint(run_dir))


def assert_bitwise_equal(a, b):
    assert a["step"] == b["step"]
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for i in sa:
        for k in sa[i]:
            assert torch.equal(sa[i][k], sb[i][k]), f"optimizer state {i}.{k} differs"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    data = make_latent_cache(root / "data")
    T.train(config(data, root / "run", steps=7))  # 8 clips / batch 2 = 4 steps an epoch: crosses an epoch
    return data, root / "run"


def test_resume_equals_uninterrupted_bitwise(uninterrupted, tmp_path):
    data, full = uninterrupted
    T.train(config(data, tmp_path / "run", steps=3))
    with pytest.raises(T.UserError, match="--resume"):
        T.train(config(data, tmp_path / "run", steps=7))
    T.train(config(data, tmp_path / "run", steps=7), resume=True)
    assert_bitwise_equal(final_state(tmp_path / "run"), final_state(full))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 8))
    assert {"loss", "mse", "vb", "grad_norm", "lr", "samples_per_s", "peak_mem_gib"} <= set(lines[0])
    assert not lines[2]["clipped"] and lines[3]["clipped"]  # Latte's start-clip step (start_clip_iter=3)
    rec = json.loads((tmp_path / "run" / "records" / "train.json").read_text())
    assert rec["status"] == "complete" and "scan_backend" in rec


def test_lr_decay_is_its_closed_form_every_step_and_resumes_exactly(tmp_path):
    """--lr-decay-start 2 --lr-decay-end 7, lr 1e-3: updates 0-1 at 1e-3, then 1e-3 * (7 - n) / 5 (worked out by
    hand below); the rate each logged step used is that; a run stopped at 3 and resumed to 7 equals one run to 7
    bit for bit; and a constant rate hashes as before the options existed."""
    data = make_latent_cache(tmp_path / "data")
    kw = dict(lr=1e-3, lr_decay_start=2, lr_decay_end=7)
    by_hand = [1e-3, 1e-3, 1e-3, 8e-4, 6e-4, 4e-4, 2e-4]  # n = 0..6; at n = 7 it would be 0
    cfg = config(data, tmp_path / "full", steps=7, **kw)
    assert [cfg.lr_at(n) for n in range(7)] == pytest.approx(by_hand, rel=1e-12) and cfg.lr_at(7) == 0.0
    T.train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [x["lr"] for x in lines] == pytest.approx(by_hand, rel=1e-12)  # log_every 1: the rate of that update
    rec = json.loads((tmp_path / "full" / "records" / "train.json").read_text())
    assert rec["protocol"]["lr_schedule"] == "0.001, falling linearly from step 2 to 0 at step 7"
    T.train(config(data, tmp_path / "cut", steps=3, **kw))
    T.train(config(data, tmp_path / "cut", steps=7, **kw), resume=True)
    assert_bitwise_equal(final_state(tmp_path / "cut"), final_state(tmp_path / "full"))
    # the schedule is part of the run, and the refusal names what changed (a new user could not tell before)
    with pytest.raises(T.UserError, match=r"different configuration \(lr_decay_start: 2 -> 3\)"):
        T.train(config(data, tmp_path / "cut", steps=7, lr=1e-3, lr_decay_start=3, lr_decay_end=7), resume=True)
    assert "lr_decay_end" not in config(data, "r").hashed() and config(data, "r", **kw).hashed()["lr_decay_end"] == 7


def test_lr_decay_is_refused_where_it_means_nothing():
    with pytest.raises(T.UserError, match="--lr-decay-start 5 --lr-decay-end 5: expected 0 <= start < end"):
        config("d", "r", lr_decay_start=5, lr_decay_end=5)
    with pytest.raises(T.UserError, match="--lr-decay-start 5 without --lr-decay-end"):
        config("d", "r", lr_decay_start=5)
    with pytest.raises(T.UserError, match="--steps 7 runs past --lr-decay-end 6, where the learning rate is 0"):
        config("d", "r", steps=7, lr_decay_end=6)


@pytest.mark.parametrize("kill", ["after-write", "mid-write"])
def test_resume_after_sigkill(uninterrupted, tmp_path, kill):
    """Killed after step 5 is logged with checkpoint 4 on disk, or while checkpoint 4 is being written
    (in the background writer): the resume equals the uninterrupted run bit for bit either way."""
    data, full = uninterrupted
    run = tmp_path / "run"
    cfg = config(data, run, steps=7)
    code = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from harness import checkpoint as C, io, train as T
        ckpt4 = Path({str(run)!r}) / "checkpoints" / "step-0000004.pt"
        if {kill!r} == "mid-write":  # die inside the write of checkpoint 4, its temporary file half-written
            orig_save = C.atomic_save_torch
            def save(path, obj):
                if Path(path) == ckpt4:
                    io.atomic_write_with(path, lambda f: (f.write(b"half"), f.flush(), os.kill(os.getpid(), 9)))
                orig_save(path, obj)
            C.atomic_save_torch = save
        orig = T._append_jsonl
        def hook(path, obj):
            orig(path, obj)
            if obj.get("step") == 5:
                deadline = time.time() + 60
                while not ckpt4.exists() and time.time() < deadline:  # checkpoint 4's background write landed
                    time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGKILL)
        T._append_jsonl = hook
        T.train(T.TrainConfig(**{cfg.__dict__!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    if kill == "after-write":
        assert T.latest_checkpoint(run).name == "step-0000004.pt"
    else:
        assert T.latest_checkpoint(run).name == "step-0000002.pt"
        assert len(list((run / "checkpoints").glob(".step-0000004.pt.*.tmp"))) == 1  # the half-written file
    T.train(cfg, resume=True)
    assert_bitwise_equal(final_state(run), final_state(full))
    assert not list((run / "checkpoints").glob(".*.tmp"))  # removed by the resume
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))  # the lines of the killed steps were dropped and written again
    full_lines = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    resumed_lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in resumed_lines] == [x["loss"] for x in full_lines]


def test_nan_stops_with_message_and_keeps_last_checkpoint(tmp_path):
    data = make_latent_cache(tmp_path / "data", nan_at=list(range(8)))  # every clip NaN from the start...
    data2 = make_latent_cache(tmp_path / "data2")
    run = tmp_path / "run"
    T.train(config(data2, run, steps=2, ckpt_every=1))
    good = T.latest_checkpoint(run)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    # ...resuming the same run on poisoned data (same config hash needs the same data path: swap folders)
    os.rename(data2, tmp_path / "clean")
    os.rename(data, data2)
    with pytest.raises(T.TrainingDiverged, match=r"diverged at step 3: loss=nan.*last good checkpoint: .*step-0000002"):
        T.train(config(data2, run, steps=4, ckpt_every=1), resume=True)
    assert T.latest_checkpoint(run) == good and hashlib.sha256(good.read_bytes()).hexdigest() == digest
    event = (run / "metrics.jsonl").read_text().splitlines()[-1]  # strict JSON: no bare NaN
    assert json.loads(event, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "step": 3, "event": "diverged", "loss": "nan", "grad_norm": "nan"}
    state = T.load_checkpoint(good)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # the message's advice works: resume from it (clean data back in place) with a lower --lr
    os.rename(data2, tmp_path / "poisoned")
    os.rename(tmp_path / "clean", data2)
    T.train(config(data2, run, steps=3, ckpt_every=1, lr=5e-5), resume=True)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["lr"] == 5e-5 and np.isfinite(last["loss"])


def _ddp_worker(rank, port, data, run, ddp_options):
    os.environ.update(
        WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    T.train(config(data, run, steps=1, batch=2, class_dropout=0.0, ckpt_every=1, **ddp_options))
    torch.distributed.destroy_process_group()


# PyTorch's DDP defaults, and 1-MiB buckets (the tiny model's 1.5 MB of gradients in two) with static_graph: the
# bucketing changes when gradients are summed, not what is summed
@pytest.mark.parametrize("ddp_options", [{}, {"ddp_bucket_mb": 1, "ddp_static_graph": True}])
def test_ddp_two_processes_equal_one_process_double_batch(tmp_path, ddp_options):
    data = make_latent_cache(tmp_path / "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(data), str(tmp_path / "ddp"), ddp_options), nprocs=2,
                                join=True)
    T.train(config(data, tmp_path / "single", steps=1, batch=4, class_dropout=0.0, ckpt_every=1))
    a, b = final_state(tmp_path / "ddp"), final_state(tmp_path / "single")
    assert a["data"]["world_size"] == 2 and len(a["rng"]) == 2
    assert {k: a["config"][k] for k in ddp_options} == ddp_options  # the record keeps what the run used
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], rtol=1e-5, atol=1e-6)
    # the step really moved the weights: gradients were non-zero on both sides
    for run in ("ddp", "single"):
        line = json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[0])
        assert line["grad_norm"] > 0 and np.isfinite(line["loss"])


def test_cli_train_then_sample(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    data = make_latent_cache(tmp_path / "data")
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--run-dir",
        str(run),
        "--steps",
        "2",
        "--batch",
        "2",
        "--precision",
        "fp32",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--model-builder",
        BUILDER,
        "--log-every",
        "1",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert T.latest_checkpoint(run).name == "step-0000002.pt"
    res = CliRunner().invoke(
        app,
        [
            "sample",
            "--checkpoint",
            str(run),
            "--out",
            str(tmp_path / "s"),
            "--num",
            "2",
            "--steps",
            "3",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "clips" / "clips-00000.npy").exists() and (tmp_path / "s" / "videos").is_dir()


def test_compiled_loop_agrees_with_eager_within_bf16_tolerance(tmp_path):
    """torch.compile (on by default on CUDA, off on the CPU) runs the same math: the real tiny Latte trained
    4 steps in bf16 both ways; losses and EMA weights agree within bf16's tolerance (2e-2 relative)."""
    data = make_latent_cache(tmp_path / "data", t=2, c=3, hw=8)
    kw = dict(steps=4, ckpt_every=4, precision="bf16", model_builder="models:build_model", family="latte",
              size="tiny", class_dropout=0.0)  # no label dropout: compiled random numbers differ from eager ones
    runs = {}
    for name, compile in (("eager", None), ("compiled", True)):
        T.train(config(data, tmp_path / name, compile=compile, **kw))
        rec = json.loads((tmp_path / name / "records" / "train.json").read_text())
        assert rec["protocol"]["compile"] is (name == "compiled")  # None -> off on the CPU
        assert rec["protocol"]["compiled"] == ("4 blocks" if name == "compiled" else None)  # block by block
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        runs[name] = ([x["loss"] for x in lines], final_state(tmp_path / name)["ema"])
    np.testing.assert_allclose(runs["compiled"][0], runs["eager"][0], rtol=2e-2)
    for key, value in runs["eager"][1].items():
        torch.testing.assert_close(runs["compiled"][1][key], value, rtol=2e-2, atol=2e-3)


def test_compile_mode_reaches_each_block_and_cuda_graphs_mark_every_step(tmp_path, monkeypatch):
    """--compile-mode is compile_blocks' mode and the record's; with CUDA graphs each step starts a new graph
    iteration (torch.compiler.cudagraph_mark_step_begin) once, before the step's model call. The compile and the
    CUDA device are stood in for (graphs need a GPU; the compiled math is the test above's)."""
    data = make_latent_cache(tmp_path / "data")
    calls, events = [], []

    def fake_compile_blocks(model, mode="default"):
        calls.append(mode)
        forward = model.forward
        model.forward = lambda *a, **k: (events.append("model"), forward(*a, **k))[1]
        return "the model"

    monkeypatch.setattr(T, "compile_blocks", fake_compile_blocks)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: events.append("mark"))
    for mode, graphs in (("reduce-overhead", True), ("max-autotune-no-cudagraphs", False)):
        events.clear()
        monkeypatch.setattr(T.TrainConfig, "compile_plan", lambda self, device, g=graphs: (True, g))  # "on CUDA"
        T.train(config(data, tmp_path / mode, steps=3, compile=True, compile_mode=mode))
        rec = json.loads((tmp_path / mode / "records" / "train.json").read_text())
        assert calls[-1] == mode and rec["protocol"]["compile_mode"] == mode and rec["protocol"]["compile"] is True
        assert events == (["mark", "model"] * 3 if graphs else ["model"] * 3)  # IDDPM's loss: one call a step
    monkeypatch.undo()
    T.train(config(data, tmp_path / "eager", steps=1))
    rec = json.loads((tmp_path / "eager" / "records" / "train.json").read_text())
    assert rec["protocol"]["compile_mode"] is None and len(calls) == 2  # not compiled: no mode, no compile


def test_compile_plan_refuses_a_mode_that_would_do_nothing(tmp_path):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # descriptors only: no GPU needed
    assert config("d", "r", compile=None).compile_plan(cuda) == (True, False)  # unset: on for CUDA, off elsewhere
    assert config("d", "r", compile=None).compile_plan(cpu) == (False, False)
    assert config("d", "r", compile=None, compile_mode="reduce-overhead").compile_plan(cuda) == (True, True)
    assert config("d", "r", compile=None, compile_mode="max-autotune").compile_plan(cuda) == (True, True)
    assert config("d", "r", compile=True, compile_mode="max-autotune-no-cudagraphs").compile_plan(cpu) == (True, False)
    with pytest.raises(T.UserError, match="--compile-mode must be one of default, reduce-overhead, max-autotune, "
                                          "max-autotune-no-cudagraphs, not 'graphs'"):
        config("d", "r", compile_mode="graphs")
    with pytest.raises(T.UserError, match="--compile-mode reduce-overhead with --no-compile: nothing is compiled"):
        config("d", "r", compile=False, compile_mode="reduce-overhead")
    with pytest.raises(T.UserError, match="--compile-mode reduce-overhead uses CUDA graphs, which need a CUDA device "
                                          r"\(here: cpu\)"):
        config("d", "r", compile=True, compile_mode="reduce-overhead").compile_plan(cpu)
    data = make_latent_cache(tmp_path / "data")  # --compile unset: off on the CPU, so the mode would do nothing
    with pytest.raises(T.UserError, match="--compile-mode max-autotune: the model is not compiled on cpu unless "
                                          "--compile is given"):
        T.train(config(data, tmp_path / "run", compile=None, compile_mode="max-autotune"))
    assert not (tmp_path / "run").exists()  # refused before the run folder is taken


def test_steps_0_writes_the_untrained_checkpoint_and_training_continues_from_it(uninterrupted, tmp_path):
    """A curve's step-0 point: --steps 0 saves the initial model (EMA = model); resuming from it to 7 steps
    is the uninterrupted run bit for bit."""
    data, full = uninterrupted
    run = tmp_path / "run"
    T.train(config(data, run, steps=0))
    zero = final_state(run)
    assert zero["step"] == 0 and T.latest_checkpoint(run).name == "step-0000000.pt"
    assert all(torch.equal(zero["ema"][k], v) for k, v in zero["model"].items())
    T.train(config(data, run, steps=7), resume=True)
    assert_bitwise_equal(final_state(run), final_state(full))


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("lr", float("nan"), "--lr nan: expected 0 < lr <= 1"),
        ("lr", -1.0, "--lr -1.0: expected 0 < lr <= 1"),
        ("lr", 1e39, "--lr 1e+39: expected 0 < lr <= 1"),
        ("seed", -1, "--seed -1: expected 0..4,293,967"),
        ("seed", 20240101, "--seed 20240101: expected 0..4,293,967"),
        ("image_size", 0, "--image-size 0: must be at least 1"),
        ("num_frames", 0, "--frames 0: must be at least 1"),
        ("ddp_bucket_mb", 0, "--ddp-bucket-mb 0: must be at least 1"),
        ("clip_max_norm", -1.0, "--clip-max-norm -1.0: expected a positive norm"),
        ("class_dropout", 1.0, "--class-dropout 1.0: expected 0 <= p < 1"),
        ("ema_decay", float("nan"), "--ema-decay nan: expected 0 <= decay < 1"),
        ("precision", "fp16", "--precision must be bf16 or fp32"),
    ],
)
def test_bad_training_options_are_one_line_errors(option, value, message, tmp_path):
    with pytest.raises(T.UserError) as e:
        config(tmp_path, tmp_path / "run", **{option: value})
    assert str(e.value).startswith(message)


def test_bad_option_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "harness.cli", "train", "--data", str(tmp_path), "--run-dir",
                          str(tmp_path / "r"), "--lr", "nan"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == "error: --lr nan: expected 0 < lr <= 1 (Latte: 1e-4)"


def test_resume_with_fewer_steps_than_done_is_refused_and_a_torn_metrics_line_is_dropped(uninterrupted, tmp_path):
    data, full = uninterrupted
    run = tmp_path / "run"
    T.train(config(data, run, steps=4))
    with pytest.raises(T.UserError, match=r"step-0000004.pt is at step 4, past --steps 2: pass --steps 4 or more"):
        T.train(config(data, run, steps=2), resume=True)
    with open(run / "metrics.jsonl", "a") as f:  # a crash in the middle of writing a line
        f.write('{"step": 5, "loss": 0.99')
    T.train(config(data, run, steps=7), resume=True)
    assert_bitwise_equal(final_state(run), final_state(full))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 8))


def test_ddp_gets_the_bucket_size_and_static_graph(tmp_path):
    # harness.distributed.wrap hands both to DistributedDataParallel (a one-process gloo group stands in for torchrun)
    from harness.distributed import Dist, wrap

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = wrap(torch.nn.Linear(4, 4), torch.device("cpu"), Dist(rank=0, world=2), bucket_mb=7, static_graph=True)
        assert ddp.bucket_bytes_cap == 7 * 2**20 and ddp.static_graph
        default = wrap(torch.nn.Linear(4, 4), torch.device("cpu"), Dist(rank=0, world=2))
        assert default.bucket_bytes_cap == 25 * 2**20 and not default.static_graph
        # no buffer sync before each forward (torch 2.13 names it forward_sync_buffers, earlier broadcast_buffers)
        for m in (ddp, default):
            assert getattr(m, "forward_sync_buffers", getattr(m, "broadcast_buffers", None)) is False
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("family", ["latte", "matten"])
def test_the_models_buffers_are_fixed_so_ddp_need_not_sync_them(family):
    # why wrap() skips DDP's buffer broadcast: the buffers (sin-cos tables) are what a fresh model computes, and
    # a training step leaves them as they were
    from models import build_model

    def tiny():
        torch.manual_seed(0)
        return build_model(family, "tiny", num_classes=3, num_frames=2, input_size=8, in_channels=4)

    model, fresh = tiny(), tiny()
    before = {k: b.clone() for k, b in model.named_buffers()}
    assert before and all(torch.equal(b, dict(fresh.named_buffers())[k]) for k, b in before.items())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, t, y = torch.randn(2, 2, 4, 8, 8), torch.tensor([3, 700]), torch.tensor([0, 2])
    model(x, t, y).square().mean().backward()
    opt.step()
    assert all(torch.equal(b, before[k]) for k, b in model.named_buffers())


@pytest.mark.parametrize("n, batch, world", [(23, 3, 2), (40, 4, 4), (17, 2, 3), (12, 6, 1)])
def test_the_ranks_batches_are_disjoint_and_together_cover_each_epoch(n, batch, world):
    """Over two epochs, at every step the ranks' samples are disjoint and together are that step's global batch;
    over an epoch they are distinct and all but the incomplete tail (n mod global batch) of the dataset; their
    positions are consecutive; one process with the whole global batch sees the same (position, item, epoch); and a
    resumed rank continues where it stopped."""
    from itertools import islice

    from harness.distributed import Dist

    g, seed = batch * world, 5
    per_epoch = n // g
    ranks = [list(islice(T.batch_keys(n, batch, Dist(rank=r, world=world), seed, 0), 2 * per_epoch))
             for r in range(world)]
    one = list(islice(T.batch_keys(n, g, Dist(rank=0, world=1), seed, 0), 2 * per_epoch))
    for epoch in (0, 1):
        seen = []
        for k in range(per_epoch):
            step = epoch * per_epoch + k
            keys = [key for r in range(world) for key in ranks[r][step]]
            assert [len(ranks[r][step]) for r in range(world)] == [batch] * world
            assert sorted(p for _, p, _ in keys) == list(range(step * g, (step + 1) * g))  # consecutive positions
            assert {e for _, _, e in keys} == {epoch}
            assert sorted(keys) == sorted(one[step])  # independent of the number of processes
            seen += [i for i, _, _ in keys]
        assert len(seen) == len(set(seen)) == per_epoch * g and set(seen) <= set(range(n))  # disjoint, whole epoch
        assert len(set(range(n)) - set(seen)) == n % g  # only the tail is left out
    resumed = list(islice(T.batch_keys(n, batch, Dist(rank=world - 1, world=world), seed, per_epoch - 1), 2))
    assert resumed == ranks[world - 1][per_epoch - 1 : per_epoch + 1]  # across the epoch boundary


def test_a_resume_says_where_it_continues_or_that_there_was_nothing_to_resume(tmp_path, capsys):
    """A new user's case: --resume printed no step, and on an empty run folder silently started from step 0."""
    data = make_latent_cache(tmp_path / "data")
    T.train(config(data, tmp_path / "run", steps=2, ckpt_every=2), resume=True)
    assert "resume: no checkpoint in" in " ".join(capsys.readouterr().err.split())
    T.train(config(data, tmp_path / "run", steps=3, ckpt_every=2), resume=True)
    assert "resume: from step-0000002.pt, step 2" in " ".join(capsys.readouterr().err.split())


def test_more_workers_than_cpus_is_one_line_not_torchs_warning(tmp_path, capsys, monkeypatch):
    """A new user's case: the default 4 workers on 2 cores printed torch's multi-line UserWarning twice."""
    import os
    import warnings

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    data = make_latent_cache(tmp_path / "data")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        T.train(config(data, tmp_path / "run", steps=1, num_workers=2, loader="processes"))
    assert not [w for w in seen if "DataLoader will create" in str(w.message)]
    assert "--num-workers 2 on 1 usable CPU(s)" in " ".join(capsys.readouterr().err.split())
