"""Latte and Matten: shapes for every variant × size, adaLN-Zero, gradients, CFG, token order, condition tokens,
and the bidirectional Mamba mixer (fused one-call scan = two calls; packed short sequences = one row each;
Mamba's initialisation)."""

import math

import pytest
import torch
from einops import rearrange

from models import build_model, scan
from models.mamba import BiMamba, MambaBlock, selective_scan_packed
from models.matten import from_global_sequence, to_global_sequence

B, T, C, HW = 2, 3, 4, 8  # small latents: 3 frames of 4×8×8 → 16 tokens a frame (patch 2)


def small_model(family="matten", variant=3, **kw):
    torch.manual_seed(0)
    kw.setdefault("num_frames", T)
    kw.setdefault("input_size", HW)
    return build_model(family, "tiny", variant=variant, **kw)


def inputs(num_classes=0, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, HW, HW, generator=g)
    t = torch.randint(0, 1000, (B,), generator=g)
    y = torch.randint(0, num_classes, (B,), generator=g) if num_classes else None
    return x, t, y


def perturb_zero_params(model, scale=0.02):
    """Fill every all-zero parameter (adaLN-Zero modulation, output layer, zero biases) with small noise."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * scale)


MODELS = [("latte", None)] + [("matten", v) for v in (1, 2, 3, 4)]


@pytest.mark.parametrize("size", ["s", "b", "l", "xl"])
@pytest.mark.parametrize("family,variant", MODELS)
def test_full_size_shapes_on_meta(family, variant, size):
    # the real widths and depths, shape-checked without allocating (meta device), on a small latent
    with torch.device("meta"):
        model = build_model(family, size, variant=variant or 3, num_classes=10, num_frames=2, input_size=4)
        x = torch.empty(2, 2, 4, 4, 4)
        out = model(x, torch.zeros(2), torch.zeros(2, dtype=torch.long))
    assert out.shape == (2, 2, 8, 4, 4)


@pytest.mark.parametrize(
    "family,variant,conditioning",
    [("latte", None, "madan")] + [("matten", v, c) for v in (1, 2, 3, 4) for c in ("madan", "tokens")],
)
def test_tiny_forward_shape_and_zero_at_init(family, variant, conditioning):
    model = small_model(family, variant or 3, conditioning=conditioning, num_classes=5)
    x, t, y = inputs(num_classes=5)
    out = model(x, t, y)
    assert out.shape == (B, T, 2 * C, HW, HW)
    assert torch.count_nonzero(out) == 0  # adaLN-Zero: the output layer starts at zero


@pytest.mark.parametrize("family", ["latte", "matten"])
@pytest.mark.parametrize("patch", [4, 8])
def test_other_patch_sizes(family, patch):
    model = build_model(family, "tiny", patch=patch, num_frames=2, input_size=16)
    out = model(torch.randn(1, 2, 4, 16, 16), torch.tensor([3]), None)
    assert out.shape == (1, 2, 8, 16, 16)
    assert model.x_embedder.num_patches == (16 // patch) ** 2


def test_madan_blocks_are_identity_at_init():
    model = small_model(variant=3)
    x = torch.randn(2, 16, 64)
    c = torch.randn(2, 64)
    for block in model.blocks:  # every attention and Mamba block starts as the identity (zero gates)
        torch.testing.assert_close(block(x, c), x)


@pytest.mark.parametrize("family,variant,conditioning", [("latte", 3, "madan"), ("matten", 3, "madan"),
                                                         ("matten", 2, "tokens"), ("matten", 1, "madan"),
                                                         ("matten", 4, "tokens")])
def test_gradients_reach_every_parameter(family, variant, conditioning):
    model = small_model(family, variant, conditioning=conditioning, num_classes=5, class_dropout=0.1)
    model.eval()  # no label dropout: the null row is checked below
    perturb_zero_params(model)
    x, t, y = inputs(num_classes=5)
    y = torch.tensor([1, 5])  # one real class and the null class, so every embedding row used gets a gradient
    out = model(x, t, y)
    (out**2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_cfg_doubles_batch_and_mixes_only_noise_channels():
    model = small_model(num_classes=5)
    model.eval()
    perturb_zero_params(model, scale=0.1)
    x, t, y = inputs(num_classes=5)
    batches = []
    model.final_layer.register_forward_hook(lambda m, i, o: batches.append(i[0].shape[0]))
    scale = 3.0
    guided = model.forward_with_cfg(x, t, y, scale)
    assert batches == [2 * B * T]  # one forward over [cond; uncond]: batch 2B (× T frames at the final layer)
    with torch.no_grad():
        cond = model(x, t, y)
        uncond = model(x, t, torch.full_like(y, 5))
    assert guided.shape == (B, T, 2 * C, HW, HW)
    torch.testing.assert_close(guided[:, :, :C], uncond[:, :, :C] + scale * (cond[:, :, :C] - uncond[:, :, :C]),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(guided[:, :, C:], cond[:, :, C:], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(cond[:, :, :C], uncond[:, :, :C])  # the labels matter


def test_unconditional_model_refuses_labels_and_cfg():
    model = small_model()
    x, t, _ = inputs()
    with pytest.raises(ValueError, match="unconditional"):
        model(x, t, torch.zeros(B, dtype=torch.long))
    with pytest.raises(ValueError, match="class-conditional"):
        model.forward_with_cfg(x, t, torch.zeros(B, dtype=torch.long), 4.0)


def test_global_sequence_is_spatial_first():
    frames, s = 3, 4
    # token value = 100·batch + 10·frame + spatial index, laid out as (B·T, S, 1)
    x = torch.tensor([[[100 * b + 10 * f + i] for i in range(s)] for b in range(2) for f in range(frames)]).float()
    seq = to_global_sequence(x, frames)  # (B, T·S, 1)
    assert seq[0, :, 0].tolist() == [10 * f + i for f in range(frames) for i in range(s)]
    assert seq[1, :, 0].tolist() == [100 + 10 * f + i for f in range(frames) for i in range(s)]
    torch.testing.assert_close(from_global_sequence(seq, frames), x)


def test_global_mamba_sees_tokens_in_spatial_first_order():
    model = small_model(variant=1)  # global Mamba blocks only: the first block sees the embedded tokens
    x, t, _ = inputs()
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model(x, t, None)
    frames_tokens = model.x_embedder(rearrange(x, "b f c h w -> (b f) c h w")) + model.pos_embed  # (B·T, S, D)
    expected = torch.stack(
        [torch.cat([frames_tokens[b * T + f] + model.temp_embed[0, f] for f in range(T)]) for b in range(B)]
    )  # (B, T·S, D): frame 0's S tokens (row-major), then frame 1's, ...
    torch.testing.assert_close(seen[0], expected)


def test_condition_tokens_are_prepended_and_removed():
    block = MambaBlock(32, conditioning="tokens")
    lengths = []
    block.mixer.register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1]))
    x = torch.randn(2, 10, 32)
    tok_a, tok_b = torch.randn(2, 2, 32), torch.randn(2, 2, 32)
    out_a = block(x, None, tok_a)
    out_b = block(x, None, tok_b)
    assert lengths == [12, 12]  # the mixer scans 2 condition tokens + 10 tokens
    assert out_a.shape == x.shape  # ... and they are removed again
    assert not torch.allclose(out_a, out_b)  # the tokens condition the output


def test_tokens_model_has_no_madan_and_differs_in_params():
    madan = small_model(conditioning="madan")
    tokens = small_model(conditioning="tokens")
    assert any("blocks.2.adaLN_modulation" in n for n, _ in madan.named_parameters())
    assert not any("blocks.2.adaLN_modulation" in n for n, _ in tokens.named_parameters())


def test_fused_bidirectional_scan_equals_two_calls():
    torch.manual_seed(0)
    mixer = BiMamba(16)
    x = torch.randn(2, 20, 16)
    fused = mixer(x)
    mixer.fused = False
    two = mixer(x)
    torch.testing.assert_close(fused, two, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("grouped", [False, True])
def test_packed_scan_equals_one_row_per_sequence_on_outputs_and_every_gradient(backend, grouped):
    """Three sequences a row with resetting separators compute what three rows compute (fp32, the backends'
    precision): outputs and the gradients of u, delta, A, B, C, D, z and delta_bias. A spans Mamba's
    1..16 and one tiny |A| (1e-3, the slowest decay a trained A_log reaches): the separator still resets."""
    g = torch.Generator().manual_seed(0)
    batch, d, n, L = 6, 8, 4, 5
    A = -torch.cat([torch.linspace(1, 16, d * n - 1), torch.tensor([1e-3])]).reshape(d, n)
    shape_bc = (batch, 2, n, L) if grouped else (batch, n, L)
    leaves = {"u": torch.randn(batch, d, L, generator=g), "delta": torch.randn(batch, d, L, generator=g),
              "A": A, "B": torch.randn(*shape_bc, generator=g), "C": torch.randn(*shape_bc, generator=g),
              "D": torch.randn(d, generator=g), "z": torch.randn(batch, d, L, generator=g),
              "delta_bias": torch.randn(d, generator=g)}
    dy = torch.randn(batch, d, L, generator=g)
    results = []
    scan.set_backend(backend)
    try:
        for pack in (1, 3):
            inp = {k: v.clone().requires_grad_() for k, v in leaves.items()}
            out = selective_scan_packed(pack, *inp.values(), delta_softplus=True)
            out.backward(dy)
            results.append((out, {k: v.grad for k, v in inp.items()}))
    finally:
        scan.set_backend("auto")
    (one, grads_one), (packed, grads_packed) = results
    torch.testing.assert_close(packed, one, rtol=1e-6, atol=1e-6)
    for k in leaves:
        torch.testing.assert_close(grads_packed[k], grads_one[k], rtol=1e-5, atol=1e-5, msg=k)


@pytest.mark.parametrize("variant,conditioning", [(2, "madan"), (2, "tokens"), (3, "madan")])
def test_packed_spatial_and_temporal_mamba_leave_the_model_unchanged(variant, conditioning):
    """Matten with S-/T-mamba packed (the default) against one scan row per sequence: same output, same gradient
    of every parameter (fp32, the torch backend; variant 3 has no S-/T-mamba and is untouched)."""
    x, t, y = inputs(num_classes=3)
    runs = []
    for pack in (False, True):
        model = small_model(variant=variant, conditioning=conditioning, num_classes=3)
        model.pack_sequences = pack
        out = model(x, t, y)
        out.square().mean().backward()
        runs.append((out, {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=1e-5, atol=1e-6)
    for name, grad in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_matten_packs_where_the_scan_is_mamba_ssms_in_fp32_or_bf16(monkeypatch):
    """pack_sequences=None (the default) packs only on mamba-ssm's kernel (where one thread block per row makes
    short rows costly) and in dtypes that hold the separator; True/False force it."""
    import models.matten as matten

    model = small_model(variant=2)
    x = torch.zeros(2, 3)
    assert model.pack_sequences is None and not model._packs(x)  # the CPU: the torch backend
    monkeypatch.setattr(matten, "resolve_backend", lambda device: "cuda")
    assert model._packs(x) and model._packs(x.bfloat16()) and not model._packs(x.half())
    model.pack_sequences = False
    assert not model._packs(x)
    with pytest.raises(ValueError, match="fp32 or bf16"):
        selective_scan_packed(2, *(torch.zeros(2, 4, 3).half() for _ in range(2)), -torch.ones(4, 2),
                              torch.zeros(2, 2, 3), torch.zeros(2, 2, 3))


def test_bidirectional_mixer_is_flip_symmetric():
    # swapping the forward and backward parameters and reversing the input reverses the output
    torch.manual_seed(0)
    mixer = BiMamba(16)
    x = torch.randn(1, 12, 16)
    out = mixer(x)
    swapped = BiMamba(16)
    state = mixer.state_dict()
    swap = {}
    for k, v in state.items():
        if k.startswith(("conv1d_b", "x_proj_b", "dt_proj_b")) or k in ("A_b_log", "D_b"):
            swap[k.replace("_b.", ".").replace("A_b_log", "A_log").replace("D_b", "D")] = v
        elif k.startswith(("conv1d.", "x_proj.", "dt_proj.")) or k in ("A_log", "D"):
            swap[{"A_log": "A_b_log", "D": "D_b"}.get(k, k.replace(".", "_b.", 1))] = v
        else:
            swap[k] = v
    swapped.load_state_dict(swap)
    torch.testing.assert_close(swapped(x.flip(1)), out.flip(1), rtol=1e-5, atol=1e-6)


def test_mamba_initialisation():
    mixer = BiMamba(64, d_state=16)
    assert mixer.d_inner == 128 and mixer.dt_rank == math.ceil(64 / 16)
    for A_log in (mixer.A_log, mixer.A_b_log):
        torch.testing.assert_close(torch.exp(A_log), torch.arange(1, 17.0).repeat(128, 1))
    assert torch.all(mixer.D == 1) and torch.all(mixer.D_b == 1)
    for proj in (mixer.dt_proj, mixer.dt_proj_b):
        dt = torch.nn.functional.softplus(proj.bias)
        assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
        assert proj.weight.abs().max() <= mixer.dt_rank**-0.5
    # the model's DiT-style init (xavier on Linears) leaves the mixers' Mamba init in place
    model = small_model(variant=3)
    mixer = model.blocks[2].mixer
    torch.testing.assert_close(torch.exp(mixer.A_log), torch.arange(1, 17.0).repeat(mixer.d_inner, 1))
    assert torch.nn.functional.softplus(mixer.dt_proj.bias).max() <= 0.1 * (1 + 1e-4)


def test_sincos_tables_by_hand():
    from models.blocks import sincos_1d, sincos_2d

    pos = sincos_2d(8, 3)  # 3×3 grid, 8 channels: 4 from w, 4 from h; ω = (1, 0.01) for 4 channels
    assert pos.shape == (9, 8)
    h, w = 1, 2
    expected = [math.sin(w), math.sin(0.01 * w), math.cos(w), math.cos(0.01 * w),
                math.sin(h), math.sin(0.01 * h), math.cos(h), math.cos(0.01 * h)]
    torch.testing.assert_close(pos[h * 3 + w], torch.tensor(expected, dtype=torch.float64))
    temp = sincos_1d(4, torch.arange(3))
    torch.testing.assert_close(temp[2], torch.tensor([math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)],
                                                     dtype=torch.float64))


def test_conv_as_shifted_sums_under_compile_equals_depthwise_conv(monkeypatch):
    """Under torch.compile the mixer's causal depthwise conv is written as K shifted multiply-adds (so the compiler
    fuses it); it must compute what F.conv1d computes in eager mode."""
    from models.mamba import BiMamba

    torch.manual_seed(0)
    m = BiMamba(32)
    x = torch.randn(2, m.d_inner, 37)
    eager = m._conv(x, m.conv1d.weight, m.conv1d.bias)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    shifted = m._conv(x, m.conv1d.weight, m.conv1d.bias)
    torch.testing.assert_close(shifted, eager, rtol=1e-6, atol=1e-6)
