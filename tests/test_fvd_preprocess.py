"""Resizing and scaling match the TF reference's arithmetic (hand computations on tiny inputs)."""

import numpy as np
import torch

from harness.fvd.i3d import same_padding
from harness.fvd.protocol import preprocess, resize_bilinear_tf, resize_short_side_center_crop


def test_tf_legacy_bilinear_upsampling_by_hand():
    # TF resize_bilinear (half_pixel_centers=False): output j reads input at j * 2/4 = 0, 0.5, 1, 1.5;
    # index 1.5 lies between row 1 and the clamped row 1, so the last two outputs repeat the edge.
    x = torch.tensor([[10.0, 30.0], [50.0, 70.0]]).view(1, 1, 2, 2)
    y = resize_bilinear_tf(x, (4, 4))[0, 0]
    row0 = [10.0, 20.0, 30.0, 30.0]
    row1 = [30.0, 40.0, 50.0, 50.0]  # halfway between the two input rows
    row2 = [50.0, 60.0, 70.0, 70.0]
    expected = torch.tensor([row0, row1, row2, row2])
    assert torch.equal(y, expected)


def test_tf_legacy_bilinear_downsampling_by_hand():
    # 5 -> 2: scale 2.5, outputs read at 0 and 2.5 (no half-pixel shift, no antialias).
    x = torch.arange(25, dtype=torch.float32).view(1, 1, 5, 5)  # x[i, j] = 5i + j
    y = resize_bilinear_tf(x, (2, 2))[0, 0]
    # at (0, 0): 0; at (0, 2.5): 2.5; at (2.5, 0): 12.5; at (2.5, 2.5): 15
    assert torch.equal(y, torch.tensor([[0.0, 2.5], [12.5, 15.0]]))
    # torch's own bilinear (half-pixel centres) gives different numbers: this is not the same resize
    assert not torch.allclose(torch.nn.functional.interpolate(x, size=(2, 2), mode="bilinear"), y[None, None])


def test_preprocess_scales_to_minus_one_one_and_lays_out_channels_first():
    clips = np.zeros((1, 2, 224, 224, 3), dtype=np.uint8)
    clips[0, 0, 0, 0] = [0, 255, 51]
    clips[0, 1] = 255
    x = preprocess(torch.from_numpy(clips))
    assert x.shape == (1, 3, 2, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0, 0], torch.tensor([-1.0, 1.0, 2 * 51 / 255 - 1]), atol=1e-7)
    assert torch.all(x[0, :, 1] == 1.0)
    assert x.is_contiguous(memory_format=torch.channels_last_3d)


def test_preprocess_256_to_224_equals_a_numpy_hand_computation():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    x = preprocess(torch.from_numpy(frame[None, None]))[0, :, 0]  # (3, 224, 224)
    f = frame.astype(np.float32)
    src = (np.arange(224, dtype=np.float32) * np.float32(256 / 224)).astype(np.float32)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, 255)
    d = (src - i0).astype(np.float32)
    for (r, c) in [(0, 0), (5, 200), (111, 37), (223, 223)]:
        tl, tr, bl, br = f[i0[r], i0[c]], f[i0[r], i1[c]], f[i1[r], i0[c]], f[i1[r], i1[c]]
        top, bottom = tl + (tr - tl) * d[c], bl + (br - bl) * d[c]
        expected = (top + (bottom - top) * d[r]) * np.float32(2 / 255) - 1
        np.testing.assert_allclose(x[:, r, c].numpy(), expected, atol=1e-6)


def test_videogpt_short_side_then_center_crop():
    frames = torch.arange(2 * 3 * 4 * 8, dtype=torch.float32).view(2, 3, 4, 8)
    out = resize_short_side_center_crop(frames, 4)  # short side already 4: only the centre crop
    assert torch.equal(out, frames[:, :, :, 2:6])
    wide = torch.zeros(1, 3, 256, 320)
    assert resize_short_side_center_crop(wide, 224).shape == (1, 3, 224, 224)


def test_tf_same_padding_puts_the_odd_pixel_after():
    assert same_padding(224, 7, 2) == (2, 3)  # Conv3d_1a_7x7
    assert same_padding(112, 3, 2) == (0, 1)  # MaxPool3d_2a_3x3
    assert same_padding(8, 3, 2) == (0, 1)  # MaxPool3d_4a_3x3 in time
    assert same_padding(4, 2, 2) == (0, 0)  # MaxPool3d_5a_2x2
    assert same_padding(28, 3, 1) == (1, 1)


def test_resize_of_a_whole_non_square_uint8_frame_is_bit_exact_with_numpy():
    """Every pixel of a 240x320 -> 224x224 resize, uint8 or float input, equals TF's float32
    arithmetic done in numpy: x first (top, bottom), then y."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    f = frame.astype(np.float32)

    def axis(n_in: int, n_out: int):
        src = np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float32)

    y0, y1, dy = axis(240, 224)
    x0, x1, dx = axis(320, 224)
    top = f[y0][:, x0] + (f[y0][:, x1] - f[y0][:, x0]) * dx[None, :, None]
    bottom = f[y1][:, x0] + (f[y1][:, x1] - f[y1][:, x0]) * dx[None, :, None]
    expected = (top + (bottom - top) * dy[:, None, None]).transpose(2, 0, 1)  # (3, 224, 224)
    chw = torch.from_numpy(frame).permute(2, 0, 1)[None]  # (1, 3, 240, 320) uint8
    for source in (chw, chw.float()):
        out = resize_bilinear_tf(source, (224, 224))
        assert out.dtype == torch.float32 and out.shape == (1, 3, 224, 224)
        assert np.array_equal(out[0].numpy(), expected)
