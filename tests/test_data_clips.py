"""ClipDataset and eval_clips: shapes, values, Latte's frame indices, flips, determinism, reading only what's needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _data_fixtures import frame_folder, gray_video

from harness.data import clips as clips_mod
from harness.data.clips import ClipDataset, eval_clips, eval_plan, resize_center_crop, window_indices
from harness.data.prepare import prepare_dataset

# Latte: np.linspace(begin, begin + 47, 16).astype(int) = begin + floor(k * 47 / 15), k = 0..15
LATTE_OFFSETS_16x3 = [0, 3, 6, 9, 12, 15, 18, 21, 25, 28, 31, 34, 37, 40, 43, 47]


@pytest.fixture(scope="module")
def gray_dataset(tmp_path_factory):
    """Two videos (60 and 50 frames) whose frame t is grey 4t, and a frame folder (55 frames, grey t)."""
    root = tmp_path_factory.mktemp("gray")
    gray_video(root / "src" / "a.mp4", 60, size=(40, 30))
    gray_video(root / "src" / "b.avi", 50, size=(40, 30), container="avi")
    frame_folder(root / "src" / "c", 55, size=(40, 30))
    prepare_dataset("ffs", root / "src", root / "prep", progress=False)
    return root / "prep"


def test_window_indices_follow_latte():
    rng = np.random.default_rng(0)
    begin = int(np.random.default_rng(0).integers(0, 100 - 48 - 1 + 1))  # Latte's bound: max(0, total - 48 - 1)
    assert window_indices(100, 16, 3, rng).tolist() == [begin + o for o in LATTE_OFFSETS_16x3]
    for seed in range(20):  # a video of exactly 48 frames: the window is the whole video; 49: still begin 0
        assert window_indices(48, 16, 3, np.random.default_rng(seed)).tolist() == LATTE_OFFSETS_16x3
        assert window_indices(49, 16, 3, np.random.default_rng(seed)).tolist() == LATTE_OFFSETS_16x3
    begins = {window_indices(50, 16, 3, np.random.default_rng(s))[0] for s in range(50)}
    assert begins == {0, 1}
    # 4 frames at interval 2: linspace(b, b + 7, 4) = b + [0, 2.33, 4.67, 7] → b + [0, 2, 4, 7]
    idx = window_indices(20, 4, 2, np.random.default_rng(3))
    assert (idx - idx[0]).tolist() == [0, 2, 4, 7] and 0 <= idx[0] <= 11


def test_indices_for_a_given_seed_are_pinned(gray_dataset):
    ds = ClipDataset(gray_dataset, size=32, seed=7)
    indices, _ = ds.sample_plan(0, epoch=0)  # a.mp4: 60 frames → begin in [0, 11]
    # begin = np.random.default_rng((seed, epoch, i)).integers(0, 12): 11 at epoch 0, 10 at epoch 1 (pinned)
    assert indices.tolist() == [11 + o for o in LATTE_OFFSETS_16x3]
    assert ds.sample_plan(0, epoch=1)[0].tolist() == [10 + o for o in LATTE_OFFSETS_16x3]


def test_decoded_frames_are_the_sampled_frames(gray_dataset):
    ds = ClipDataset(gray_dataset, size=32, seed=1, train=False, uint8=True)
    for i in range(len(ds)):
        indices, _ = ds.sample_plan(i)
        video = ds[i]["video"]
        assert video.shape == (16, 32, 32, 3) and video.dtype == torch.uint8
        means = video.float().mean(dim=(1, 2, 3)).numpy()
        step = 1 if ds.kinds[i] == "frames" else 4
        np.testing.assert_allclose(means, step * indices, atol=2.5)  # lossy codecs: within a few grey levels


def test_float_clip_shape_range_label(gray_dataset):
    ds = ClipDataset(gray_dataset, size=24, seed=0)
    item = ds[2]
    assert item["video"].shape == (16, 3, 24, 24) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["label"] == -1 and item["index"] == 2 and ds.num_classes == 0
    # uint8 → [-1, 1]: grey g maps to g / 127.5 - 1
    u = ClipDataset(gray_dataset, size=24, seed=0, uint8=True)[2]["video"]
    torch.testing.assert_close(item["video"], u.permute(0, 3, 1, 2).float() / 127.5 - 1)


def test_resize_short_side_then_center_crop():
    # 30x40 (H x W): short side 30 → 24 gives 24x32, and the crop keeps the middle 24 columns
    frames = np.zeros((2, 30, 40, 3), dtype=np.uint8)
    frames[:, :, 15:25] = 200  # a centred vertical band survives the crop, centred
    out = resize_center_crop(frames, 24)
    assert out.shape == (2, 3, 24, 24) and out.dtype == torch.uint8
    cols = out[0, 0].float().mean(0)
    assert torch.allclose(cols, cols.flip(0), atol=30)  # symmetric about the centre
    assert resize_center_crop(frames, 24, crop="none").shape == (2, 3, 24, 24)
    same = np.random.default_rng(0).integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    assert torch.equal(resize_center_crop(same, 24), torch.from_numpy(same).permute(0, 3, 1, 2))  # no-op


def test_flip_only_in_training(gray_dataset):
    train = ClipDataset(gray_dataset, size=32, seed=3, train=True)
    evals = ClipDataset(gray_dataset, size=32, seed=3, train=False)
    flips = [train.sample_plan(i, epoch=e)[1] for e in range(8) for i in range(3)]
    assert any(flips) and not all(flips)
    assert not any(evals.sample_plan(i, epoch=e)[1] for e in range(8) for i in range(3))
    e, i = next((e, i) for e in range(8) for i in range(3) if train.sample_plan(i, epoch=e)[1])
    train.set_epoch(e)
    evals.set_epoch(e)
    assert torch.equal(train[i]["video"], evals[i]["video"].flip(-1))  # same window, mirrored


def test_items_depend_only_on_seed_epoch_index(gray_dataset):
    ds = ClipDataset(gray_dataset, size=16, seed=5)
    ds.set_epoch(2)
    direct = [ds[i]["video"] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, shuffle=False)
    for i, batch in enumerate(loader):
        assert torch.equal(batch["video"][0], direct[i])
    again = ClipDataset(gray_dataset, size=16, seed=5)
    again.set_epoch(2)
    assert torch.equal(again[1]["video"], direct[1])


def test_frame_folders_read_only_needed_images(gray_dataset, monkeypatch):
    from PIL import Image

    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    ds = ClipDataset(gray_dataset, size=16, num_frames=4, frame_interval=2)
    ds[2]
    assert len(opened) == 4


def test_video_reads_only_needed_frames(gray_dataset, monkeypatch):
    import decord

    calls = []

    class Spy(decord.VideoReader):
        def get_batch(self, indices):
            calls.append(list(indices))
            return super().get_batch(indices)

        def __getitem__(self, i):
            raise AssertionError("whole-video access")

    monkeypatch.setattr(decord, "VideoReader", Spy)
    ds = ClipDataset(gray_dataset, size=16)
    ds[0]
    assert calls == [ds.sample_plan(0)[0].tolist()]


def test_eval_clips_identical_and_repeating(gray_dataset):
    a = list(eval_clips(gray_dataset, 7, seed=11, size=16, batch_size=3))
    b = list(eval_clips(gray_dataset, 7, seed=11, size=16, batch_size=3))
    assert [x.shape for x in a] == [(3, 16, 16, 16, 3), (3, 16, 16, 16, 3), (1, 16, 16, 16, 3)]
    assert all(x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    plan = eval_plan(3, 7, seed=11)
    assert sorted(v for v, p in plan[:3]) == [0, 1, 2] and [p for _, p in plan] == [0, 0, 0, 1, 1, 1, 2]
    assert [v for v, _ in plan[3:6]] == [v for v, _ in plan[:3]]  # every video once per pass, same order
    c = list(eval_clips(gray_dataset, 7, seed=12, size=16, batch_size=3))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_labels_and_num_classes_for_ucf_layout(tmp_path):
    opts = dict(num_classes=3, videos_per_class=1, frames=48, width=32, height=32)
    prepare_dataset("synthetic", None, tmp_path, synthetic_options=opts, progress=False)
    ds = ClipDataset(tmp_path, size=16)
    assert ds.num_classes == 3 and [ds[i]["label"] for i in range(3)] == [0, 1, 2]


def test_missing_manifest_is_a_user_error(tmp_path):
    from harness.errors import UserError

    with pytest.raises(UserError, match="run `matten-bench prepare` first"):
        ClipDataset(tmp_path)
    assert clips_mod.ClipDataset is ClipDataset


def test_upscaling_gives_the_same_pixels_with_or_without_the_antialias_filter():
    """resize_center_crop skips the antialias filter on an upscale: that must change no pixel."""
    import torch.nn.functional as F

    frames = np.random.default_rng(0).integers(0, 256, size=(4, 240, 320, 3), dtype=np.uint8)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    with_filter = F.interpolate(x, size=(256, 341), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(resize_center_crop(frames, 256), with_filter[..., 0:256, 42:298])
    # where it shrinks, the filter is kept (and differs from plain bilinear)
    small = resize_center_crop(frames, 128, antialias=True)
    assert not torch.equal(small, resize_center_crop(frames, 128, antialias=False))


def test_uint8_clips_turned_float_equal_the_float_clips(tmp_path):
    """The trainer's path (workers send uint8, clips_to_float on the consumer) gives exactly the
    numbers of ClipDataset's float output, flipped clips included."""
    from harness.data.clips import clips_to_float
    from harness.data.synthetic import generate_synthetic

    source = generate_synthetic(tmp_path / "src", num_classes=2, videos_per_class=2, frames=(60, 60), width=64,
                                height=48, fps=10, seed=0)
    prepare_dataset("ucf101", source, tmp_path / "prep", progress=False)
    as_float = ClipDataset(tmp_path / "prep", size=32, seed=1)
    as_uint8 = ClipDataset(tmp_path / "prep", size=32, seed=1, uint8=True)
    assert any(as_float.sample_plan(i)[1] for i in range(len(as_float)))  # some clips are flipped
    batch = torch.stack([as_uint8[i]["video"] for i in range(len(as_uint8))])  # (B, T, H, W, 3) uint8
    want = torch.stack([as_float[i]["video"] for i in range(len(as_float))])  # (B, T, 3, H, W) float
    got = clips_to_float(batch)
    assert got.dtype == torch.float32 and got.is_contiguous() and torch.equal(got, want)
    assert clips_to_float(want) is want  # float input (latents) passes through


def test_decord_frames_come_through_dlpack_unchanged(gray_dataset):
    """read_frames hands decord's buffer to torch without a copy: same pixels as decord's own .asnumpy(),
    still valid after the reader is gone, and frame folders give the same type."""
    import gc

    import decord

    ds = ClipDataset(gray_dataset, size=32, seed=3)
    for i in range(len(ds)):
        indices, _ = ds.sample_plan(i)
        frames, reread = ds.read_frames(i, indices)
        assert not reread
        gc.collect()
        assert isinstance(frames, torch.Tensor) and frames.dtype == torch.uint8 and frames.shape == (16, 30, 40, 3)
        if ds.kinds[i] == "video":
            copy = decord.VideoReader(str(ds.source / ds.paths[i])).get_batch(indices.tolist()).asnumpy()
            assert np.array_equal(frames.numpy(), copy)


def test_videos_shorter_than_the_window_are_counted_and_refused_or_left_out_never_squeezed(gray_dataset):
    """gray_dataset holds videos of 60, 50 and 55 frames. A window of 13 x 4 = 52 frames fits two of them;
    the 50-frame one would get its 13 indices spread over 50 frames (a smaller interval) if it were used."""
    from harness.data.clips import short_mask, short_videos
    from harness.errors import UserError

    assert short_mask([60, 50, 55, 52], 13, 4).tolist() == [False, True, False, False]  # 52 frames fit exactly
    assert short_videos(gray_dataset, 16, 3) == {"window": 48, "videos": 3, "too_short": 0, "shortest": 50}
    assert short_videos(gray_dataset, 13, 4) == {"window": 52, "videos": 3, "too_short": 1, "shortest": 50}

    with pytest.raises(UserError, match=r"1 of 3 usable videos have fewer than 52 frames .*shortest has 50"):
        ClipDataset(gray_dataset, size=16, num_frames=13, frame_interval=4)  # the default (the trainer's): refused
    ds = ClipDataset(gray_dataset, size=16, num_frames=13, frame_interval=4, too_short="skip")
    assert len(ds) == 2 and ds.too_short == 1 and 50 not in ds.totals
    for i in range(len(ds)):
        for epoch in range(5):
            idx, _ = ds.sample_plan(i, epoch)
            assert idx[-1] - idx[0] == 51  # the whole 52-frame window: the interval kept
    with pytest.raises(UserError, match="3 of 3 usable videos have fewer than 64 frames"):
        ClipDataset(gray_dataset, size=16, num_frames=16, frame_interval=4, too_short="skip")  # none left
    clips = np.concatenate(list(eval_clips(gray_dataset, 4, size=16, num_frames=13, frame_interval=4,
                                           too_short="skip")))
    assert clips.shape == (4, 13, 16, 16, 3)
    with pytest.raises(UserError, match="fewer than 52 frames"):
        next(eval_clips(gray_dataset, 4, size=16, num_frames=13, frame_interval=4))
