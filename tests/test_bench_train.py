"""The training benchmark's pieces on CPU: explicit attention equals SDPA; a tiny run fills every field."""

import torch
import torch.nn.functional as F

from harness import bench_train as B


def test_explicit_attention_equals_sdpa():
    q, k, v = (torch.randn(2, 3, 7, 8, dtype=torch.float64) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v)
    with B.explicit_attention():
        assert F.scaled_dot_product_attention is B.explicit_attention_sdpa
        got = F.scaled_dot_product_attention(q, k, v)
    assert F.scaled_dot_product_attention is not B.explicit_attention_sdpa
    torch.testing.assert_close(got, ref)


def test_tiny_run_on_cpu():
    res = B.run(
        ["latte"],
        size="tiny",
        batch=1,
        frames=2,
        channels=3,
        latent=4,
        num_classes=3,
        device="cpu",
        warmup=0,
        iters=1,
        compile=False,
        sample_batch=1,
        sample_steps=1,
        builder="tests.standin_models:build_model",
        log=lambda s: None,
    )
    m = res["models"][0]
    assert m["step_ms"] > 0 and m["samples_per_s"] > 0 and m["check_ok"]
    assert m["train_flops_counted"] > 0 and m["ddpm250_s_per_video"] > 0 and m["speedup_vs_latte_public"] > 0
