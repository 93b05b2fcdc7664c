"""The training and sampling stages with the real models (tiny Matten from models.build_model) on CPU."""

import numpy as np

from harness import train as T
from tests.test_sample import sample
from tests.test_train import assert_bitwise_equal, config, final_state, make_latent_cache


def test_real_matten_resume_bitwise_and_sample(tmp_path):
    data = make_latent_cache(tmp_path / "data", n=4, t=2, c=3, hw=8)
    kw = dict(model_builder="models:build_model", family="matten", size="tiny", batch=2, ckpt_every=1)
    T.train(config(data, tmp_path / "full", steps=2, **kw))
    T.train(config(data, tmp_path / "split", steps=1, **kw))
    T.train(config(data, tmp_path / "split", steps=2, **kw), resume=True)
    full = final_state(tmp_path / "full")
    assert_bitwise_equal(final_state(tmp_path / "split"), full)
    assert full["model_args"] == {"in_channels": 3, "input_size": 8, "num_classes": 3, "num_frames": 2}
    rec = sample(tmp_path / "full", tmp_path / "samples", num=1, batch_size=1, steps=2, device="cpu")
    clips = np.load(tmp_path / "samples" / "clips" / "clips-00000.npy")
    assert rec["config"]["cfg_scale"] == 7.0 and clips.shape == (1, 2, 8, 8, 3) and clips.dtype == np.uint8
