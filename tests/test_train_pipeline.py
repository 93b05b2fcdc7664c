"""Prepared data → (encode) → train → sample, with the data stage's real synthetic videos."""

import numpy as np
import pytest

from harness import train as T
from harness import vae as V
from tests.test_train import BUILDER, final_state
from tests.test_vae import save_tiny_sd_vae


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from harness.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("prep")
    opts = dict(num_classes=2, videos_per_class=2, frames=12, width=32, height=32, fps=8, seed=0)
    prepare_dataset("synthetic", None, out, num_frames=4, frame_interval=2, synthetic_options=opts, progress=False)
    return out


def test_train_pixel_space_on_prepared_data(prepared, tmp_path):
    cfg = dict(
        data=str(prepared),
        run_dir=str(tmp_path / "run"),
        model_builder=BUILDER,
        batch=2,
        steps=2,
        num_frames=4,
        frame_interval=2,
        image_size=32,
        vae="identity",
        precision="fp32",
        device="cpu",
        num_workers=1,
        ckpt_every=1,
        log_every=1,
    )
    T.train(T.TrainConfig(**cfg))
    state = final_state(tmp_path / "run")
    assert state["model_args"] == {"in_channels": 3, "input_size": 32, "num_classes": 2, "num_frames": 4}
    assert state["vae"] == {"kind": "identity"} and state["data"]["epoch"] == 1  # 4 clips / batch 2 = 2 steps


def test_encode_then_train_on_the_cache(prepared, tmp_path):
    save_tiny_sd_vae(tmp_path / "vae")
    meta = V.encode_dataset(
        prepared, tmp_path / "cache", f"sd-v1-4:{tmp_path / 'vae'}", num_frames=4, frame_interval=2, size=32
    )
    assert meta["complete"] and meta["num_videos"] == 4 and meta["num_classes"] == 2
    ds = V.LatentDataset(tmp_path / "cache")
    assert ds[0]["video"].shape == (4, 4, 16, 16) and np.isfinite(ds[0]["video"].numpy()).all()
    T.train(
        T.TrainConfig(
            data=str(tmp_path / "cache"),
            run_dir=str(tmp_path / "run"),
            model_builder=BUILDER,
            batch=2,
            steps=1,
            precision="fp32",
            device="cpu",
            num_workers=0,
        )
    )
    assert final_state(tmp_path / "run")["vae"]["kind"] == "sd-v1-4"
