"""The training benchmark's pieces on CPU: explicit attention equals SDPA; a tiny run fills every field."""

import pytest
import torch
import torch.nn.functional as F

from harness.bench import train as B
from harness.errors import UserError


def test_explicit_attention_equals_sdpa_and_rebinds_nothing(monkeypatch):
    """The explicit form equals SDPA; inside explicit_attention() the models' Attention uses it (counted), and
    F.scaled_dot_product_attention itself is never rebound."""
    from models.blocks import Attention

    q, k, v = (torch.randn(2, 3, 7, 8, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(B.explicit_attention_sdpa(q, k, v), F.scaled_dot_product_attention(q, k, v))
    attn, x = Attention(16, 2).double(), torch.randn(2, 5, 16, dtype=torch.float64)
    calls = []
    explicit = B.explicit_attention_sdpa
    counted = lambda *a: calls.append(1) or explicit(*a)  # noqa: E731
    sdpa = F.scaled_dot_product_attention
    ref = attn(x)
    monkeypatch.setattr(B, "explicit_attention_sdpa", lambda *a: calls.append("explicit") or explicit(*a))
    with B.explicit_attention():
        assert F.scaled_dot_product_attention is sdpa
        got = attn(x)
    assert calls == ["explicit"]  # the models' attention went through the explicit form inside the block
    calls.clear()
    with pytest.raises(UserError, match="never called"), B.explicit_attention():
        pass  # no model ran: the column would have measured nothing explicit
    from models.blocks import attention_through

    with attention_through(counted):
        attn(x)
    attn(x)
    assert calls == [1] and F.scaled_dot_product_attention is sdpa
    torch.testing.assert_close(got, ref)


def test_tiny_run_on_cpu_measures_the_step_and_the_train_loop():
    shape = B.Shape(size="tiny", patch=2, batch=2, frames=2, channels=3, latent=4, num_classes=3)
    # the real Latte-tiny (tiny here): its attention is what the "Latte's public way" column swaps
    opts = B.Options(warmup=0, iters=1, compile=False, sample_batch=1, sample_steps=1, loop_steps=6,
                     loop_log_every=2, loop_workers=0, ckpt_every=4, builder="models:build_model")
    res = B.run(["latte"], shape, opts, device="cpu", log=lambda s: None)
    m = res["models"][0]
    assert m["step_ms"] > 0 and m["samples_per_s"] > 0 and m["check_ok"]
    assert m["train_flops_counted"] > 0 and m["ddpm250_s_per_video"] > 0 and m["speedup_vs_latte_public"] > 0
    # the loop: 6 steps logged every 2 -> 3 intervals, the first left out as warm-up
    assert len(m["loop_samples_per_s_intervals"]) == 2 and m["loop_compiled"] is False
    assert m["loop_compile_mode"] is None  # not compiled: no mode
    assert m["loop_loader"] == "main"  # --loop-workers 0: batches made in the loop's own thread
    assert m["loop_samples_per_s"] == pytest.approx(sum(m["loop_samples_per_s_intervals"]) / 2, rel=0.01)  # median
    # a checkpoint every 4 steps of batch 2: 8 samples take 8 / steady seconds plus the loop's wait for one save
    per_cadence = 8 / m["loop_samples_per_s"] + m["loop_checkpoint_waited_s"]
    assert m["loop_samples_per_s_with_ckpt"] == pytest.approx(8 / per_cadence)
    assert m["loop_over_pure"] == pytest.approx(m["loop_samples_per_s_with_ckpt"] / m["samples_per_s"])
    assert res["machine"]["device"] == "cpu" and res["options"]["ckpt_every"] == 4


def test_loop_repeats_alternate_pure_step_and_loop_and_report_the_median_ratio(monkeypatch):
    """--loop-repeats 3: pure step, loop, pure step, loop, ... in that order; the ratio reported is the median of
    the three pairs' (stand-in measurements with known numbers; the real ones are the test above's)."""
    order, pure_ms, loop_sps = [], iter([10.0, 20.0, 40.0]), iter([300.0, 100.0, 90.0])

    def fake_pure(family, shape, opts, device):
        order.append("pure")
        ms = next(pure_ms)
        return {"step_ms": ms, "samples_per_s": shape.batch / (ms / 1e3)}

    def fake_loop(family, shape, opts, device):
        order.append("loop")
        sps = next(loop_sps)
        return {"loop_samples_per_s": sps, "loop_samples_per_s_with_ckpt": sps * 0.9,
                "loop_samples_per_s_intervals": [sps]}

    monkeypatch.setattr(B, "pure_step", fake_pure)
    monkeypatch.setattr(B, "train_loop", fake_loop)
    shape = B.Shape(size="tiny", batch=2)
    opts = B.Options(compile=False, reference=False, sampling=False, loop_repeats=3)
    m = B.bench_model("latte", shape, opts, torch.device("cpu"))
    assert order == ["pure", "loop"] * 3
    # pure samples/s 200, 100, 50; loop with ckpt 270, 90, 81 -> ratios 1.35, 0.9, 1.62 -> median 1.35
    assert m["loop_over_pure_all"] == [1.35, 0.9, 1.62] and m["loop_over_pure"] == pytest.approx(1.35)
    assert m["loop_over_pure_steady"] == pytest.approx(1.5)  # 300/200, 100/100, 90/50 -> 1.5, 1.0, 1.8
    assert m["loop_pure_step_ms_all"] == [10.0, 20.0, 40.0] and m["loop_samples_per_s"] == 100.0
    assert m["step_ms"] == 10.0 and m["loop_repeats"] == 3  # the table's step is the first pure step's
    assert m["loop_pure_samples_per_s_median"] == 100.0  # of 200, 100, 50
    with pytest.raises(UserError, match="--loop-repeats 0: must be at least 1"):
        B.Options(loop_repeats=0)


def test_the_console_names_the_medians_of_both_sides_with_several_pairs(monkeypatch):
    """With --loop-repeats, the verdict line gives the loops' and the pure steps' median samples/s beside the pairs'
    ratios, and says that the table's pure step is the first pair's (stand-in measurements, as above)."""
    from typer.testing import CliRunner

    from harness.cli.app import app

    pure_ms, loop_sps = iter([10.0, 20.0, 40.0]), iter([300.0, 100.0, 90.0])

    def fake_pure(family, shape, opts, device):
        ms = next(pure_ms)
        return {"step_ms": ms, "samples_per_s": shape.batch / (ms / 1e3), "params": 1_000_000, "peak_mem_gib": 0.5,
                "check_rel_l2_vs_fp32": 1e-3, "check_ok": True, "train_flops_scan_estimate": 0.0}

    def fake_loop(family, shape, opts, device):
        sps = next(loop_sps)
        return {"loop_samples_per_s": sps, "loop_samples_per_s_with_ckpt": sps * 0.9,
                "loop_samples_per_s_intervals": [sps], "loop_checkpoint_waited_s": 0.0,
                "loop_checkpoint_written_s": 0.1}

    monkeypatch.setattr(B, "pure_step", fake_pure)
    monkeypatch.setattr(B, "train_loop", fake_loop)
    result = CliRunner().invoke(app, [
        "bench", "train", "--device", "cpu", "--size", "tiny", "--batch", "2", "--models", "latte", "--no-compile",
        "--no-reference", "--no-sampling", "--loop-repeats", "3", "--no-record"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    # loops with ckpt 270, 90, 81 -> median 90; pure 200, 100, 50 samples/s -> median 100; ratios 1.35, 0.9, 1.62
    assert "pairs, pure step and loop alternating: 1.350, 0.900, 1.620; medians: loop 90.0, pure step 100.0" in text
    assert "the table's pure step is the first pair's" in text and "= 1.350 of the pure step: meets" in text


def test_too_short_a_loop_is_refused():
    with pytest.raises(UserError, match="at least 3 logging intervals"):
        B.Options(loop_steps=20, loop_log_every=10)


def test_a_compile_mode_is_checked_before_any_measurement():
    with pytest.raises(UserError, match="--compile-mode must be one of default, reduce-overhead"):
        B.Options(compile_mode="cudagraphs")
    with pytest.raises(UserError, match="--compile-mode reduce-overhead with --no-compile: nothing is compiled"):
        B.Options(compile=False, compile_mode="reduce-overhead")
    with pytest.raises(UserError, match="--compile-mode reduce-overhead uses CUDA graphs, which need a CUDA device"):
        B.run(["latte"], B.Shape(size="tiny"), B.Options(compile_mode="reduce-overhead"), device="cpu")
