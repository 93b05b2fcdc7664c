"""The VAE stage with a real (tiny, randomly initialised) diffusers AutoencoderKL saved to disk."""

import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from harness import vae as V
from harness.data.clips import clips_to_float
from harness.errors import UserError


def save_tiny_sd_vae(path):
    """A tiny, randomly initialised (seed 0) diffusers AutoencoderKL with SD's 4 latent channels, saved at ``path``."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        sample_size=16,
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    return save_tiny_sd_vae(tmp_path_factory.mktemp("sd") / "vae")


def test_sd_vae_loads_from_disk_and_round_trips_shapes(tiny_vae_dir):
    vae = V.load_vae(f"sd-v1-4:{tiny_vae_dir}")
    assert (vae.channels, vae.downsample) == (4, 2)
    video = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    vae.chunk = 4  # 6 frames in chunks of 4: chunking must not change the result
    z = vae.encode(video, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2, 3, 4, 8, 8)
    # same as encoding every frame at once with diffusers directly, scaled by 0.18215
    from diffusers import AutoencoderKL

    ref = AutoencoderKL.from_pretrained(tiny_vae_dir, local_files_only=True)
    mean = ref.encode(video.reshape(6, 3, 16, 16)).latent_dist.mean * 0.18215
    torch.testing.assert_close(vae.vae.encode(video.reshape(6, 3, 16, 16)).latent_dist.mean * V.SD_SCALE, mean)
    x = vae.decode(z)
    assert x.shape == video.shape and x.min() >= -1 and x.max() <= 1
    ident = vae.identity()
    assert ident["kind"] == "sd-v1-4" and len(ident["weights_sha256"]) == 64 and ident["weights_bytes"] > 0


def test_missing_vae_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="stable-diffusion-v1-4.*--vae sd-v1-4:PATH"):
        V.load_vae(f"sd-v1-4:{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="unknown --vae"):
        V.load_vae("sdxl:/x")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "encode",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "c"),
            "--vae",
            f"sd-v1-4:{tmp_path / 'nowhere'}",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.strip().startswith("error:") and "Traceback" not in out.stderr


def test_identity_vae():
    x = torch.rand(1, 2, 3, 4, 4) * 2 - 1
    vae = V.load_vae("identity")
    assert torch.equal(vae.encode(x), x) and torch.equal(vae.decode(x), x)


class _StandinClips(torch.utils.data.Dataset):
    """Stand-in for harness.data.clips.ClipDataset (its contract, without video decoding)."""

    def __init__(self, prepared_dir, *, num_frames=16, frame_interval=3, size=256, train=True, seed=0, uint8=False):
        self.n, self.t, self.size, self.num_classes = 5, num_frames, size, 2

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"video": torch.rand(self.t, 3, self.size, self.size, generator=g) * 2 - 1, "label": i % 2, "index": i}


def test_encode_cache_records_vae_and_refuses_to_mix(tiny_vae_dir, tmp_path, monkeypatch):
    clips = types.ModuleType("harness.data.clips")
    clips.ClipDataset = _StandinClips
    manifest = types.ModuleType("harness.data.manifest")
    manifest.manifest_fingerprint = lambda d: "fp"
    monkeypatch.setitem(sys.modules, "harness.data", types.ModuleType("harness.data"))
    monkeypatch.setitem(sys.modules, "harness.data.clips", clips)
    monkeypatch.setitem(sys.modules, "harness.data.manifest", manifest)

    out = tmp_path / "cache"
    meta = V.encode_dataset(tmp_path, out, f"sd-v1-4:{tiny_vae_dir}", num_frames=2, size=16, shard_size=2)
    assert meta["complete"] and meta["vae"]["kind"] == "sd-v1-4" and meta["num_videos"] == 5
    ds = V.LatentDataset(out)
    assert len(ds) == 5 and ds[3]["video"].shape == (2, 4, 8, 8) and ds[3]["label"] == 1
    # the workers send the latents as stored (fp16, half the bytes); the trainer makes float32 of them, exactly
    stored = np.load(out / "latents" / "latents-00000.npz")["latents"][1]
    assert ds[1]["video"].dtype == torch.float16
    assert np.array_equal(clips_to_float(ds[1]["video"]).numpy(), stored.astype(np.float32))
    # a rerun with the same VAE skips finished shards and gives the same latents
    first = np.load(out / "latents" / "latents-00000.npz")["latents"]
    V.encode_dataset(tmp_path, out, f"sd-v1-4:{tiny_vae_dir}", num_frames=2, size=16, shard_size=2)
    assert np.array_equal(np.load(out / "latents" / "latents-00000.npz")["latents"], first)
    with pytest.raises(UserError, match="different vae"):
        V.encode_dataset(tmp_path, out, "identity", num_frames=2, size=16, shard_size=2)
