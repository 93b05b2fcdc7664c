"""The synthetic generator: real video files decord reads back, UCF101's layout, determinism, class-dependent motion."""

from __future__ import annotations

import hashlib

import decord
import numpy as np
import pytest

from harness.data.layouts import read_class_index, read_split_list
from harness.data.synthetic import class_names, generate_synthetic, render_frames


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return generate_synthetic(root, num_classes=3, videos_per_class=4, frames=20, width=64, height=32, fps=10,
                              seed=5, progress=False)


def test_videos_read_back_by_decord(synthetic):
    files = sorted((synthetic / "UCF-101").glob("*/*.mp4"))
    assert [f.relative_to(synthetic / "UCF-101").as_posix() for f in files[:4]] == [
        "MoveA/v_MoveA_g01_c01.mp4", "MoveA/v_MoveA_g01_c02.mp4",
        "MoveA/v_MoveA_g02_c01.mp4", "MoveA/v_MoveA_g02_c02.mp4",
    ]
    assert len(files) == 12
    for f in files:
        vr = decord.VideoReader(str(f))
        assert len(vr) == 20 and vr[0].shape == (32, 64, 3) and vr.get_avg_fps() == 10
    decoded = decord.VideoReader(str(files[0])).get_batch(list(range(20))).asnumpy().astype(float)
    pixels = render_frames(0, 3, 0, frames=20, width=64, height=32, seed=5).astype(float)
    assert np.abs(decoded - pixels).mean() < 4  # libx264 at crf 18: what was drawn is what is read


def test_ucf101_lists(synthetic):
    lists = synthetic / "ucfTrainTestlist"
    assert read_class_index(lists / "classInd.txt") == ["MoveA", "MoveB", "MoveC"]
    assert (lists / "classInd.txt").read_text().splitlines()[0] == "1 MoveA"
    train1 = (lists / "trainlist01.txt").read_text().splitlines()
    assert train1[0] == "MoveA/v_MoveA_g02_c01.mp4 1"  # group 1 is the test group of split 1
    test1 = read_split_list(lists / "testlist01.txt")
    assert test1[:2] == ["MoveA/v_MoveA_g01_c01.mp4", "MoveA/v_MoveA_g01_c02.mp4"] and len(test1) == 6
    for s in (1, 2, 3):  # every video is in exactly one list of each split
        both = read_split_list(lists / f"trainlist0{s}.txt") + read_split_list(lists / f"testlist0{s}.txt")
        assert sorted(both) == sorted(f.relative_to(synthetic / "UCF-101").as_posix()
                                      for f in (synthetic / "UCF-101").glob("*/*.mp4"))


def sha256_tree(root):
    return {f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("container, writes", [("mp4", 6), ("avi", 3)])
def test_same_seed_same_bytes_on_every_write(tmp_path, container, writes):
    """The same request written again and again gives the same bytes in every file (with libx264's macroblock
    tree on, 6 writes of this dataset had differed in some file every time we tried)."""
    opts = dict(num_classes=3, videos_per_class=4, frames=36, width=64, height=64, container=container, progress=False)
    trees = [sha256_tree(generate_synthetic(tmp_path / str(n), seed=1, **opts)) for n in range(writes)]
    assert len(trees[0]) == 3 * 4 + 7 + 1  # videos, classInd + 6 lists, synthetic.json
    for tree in trees[1:]:
        assert tree == trees[0]
    other = sha256_tree(generate_synthetic(tmp_path / "seed2", seed=2, **opts))
    assert all(other[k] != trees[0][k] for k in trees[0] if k.endswith(f".{container}"))


def test_an_unchanged_request_is_not_written_again(tmp_path):
    opts = dict(num_classes=2, videos_per_class=1, frames=6, width=32, height=32, progress=False)
    a = generate_synthetic(tmp_path / "a", seed=1, **opts)
    name = "UCF-101/MoveB/v_MoveB_g01_c01.mp4"
    mtime = (a / name).stat().st_mtime_ns
    generate_synthetic(tmp_path / "a", seed=1, **opts)
    assert (a / name).stat().st_mtime_ns == mtime


def test_avi_container(tmp_path):
    src = generate_synthetic(tmp_path, num_classes=1, videos_per_class=1, frames=(9, 9), width=32, height=16,
                             container="avi", progress=False)
    vr = decord.VideoReader(str(src / "UCF-101" / "MoveA" / "v_MoveA_g01_c01.avi"))
    assert len(vr) == 9 and vr[0].shape == (16, 32, 3)


def test_class_k_moves_in_direction_k():
    """At 64x64 class k of 4 moves 1 + k pixels a frame in direction 2πk/4: the shape's mask is rolled by that."""
    for k, (dx, dy) in enumerate([(1, 0), (0, 2), (-3, 0), (0, -4)]):
        frames = render_frames(k, 4, 0, frames=2, width=64, height=64, seed=0).astype(int).sum(-1)
        masks = frames >= frames.max() - 1  # the shape is the brightest thing in the frame
        assert 10 < masks[0].sum() < 64 * 64 / 4
        assert np.array_equal(masks[1], np.roll(masks[0], shift=(dy, dx), axis=(0, 1)))
    assert class_names(28)[:2] == ["MoveA", "MoveB"] and class_names(28)[26:] == ["MoveAA", "MoveAB"]


def test_a_width_decord_cannot_decode_is_refused_before_writing(tmp_path):
    from harness.data.synthetic import generate_synthetic
    from harness.errors import UserError

    with pytest.raises(UserError, match="synthetic width 48: decord, the loader's reader, cannot decode"):
        generate_synthetic(tmp_path / "s", num_classes=1, videos_per_class=1, frames=16, width=48, height=48)
    assert not (tmp_path / "s").exists()


def test_every_preset_writes_videos_the_loader_reads():
    """The mini preset once asked for 48-pixel-wide videos, which prepare skips, every one."""
    from harness.data.probe import DECORD_BAD_WIDTHS
    from harness.run import PRESETS

    assert all(p.synthetic.get("width", 64) not in DECORD_BAD_WIDTHS for p in PRESETS.values())


def test_a_changed_request_leaves_nothing_of_the_old_one(tmp_path):
    """Four classes then two: the folder holds two classes' videos and lists, as if written fresh."""
    opts = dict(videos_per_class=1, frames=6, width=32, height=32, progress=False)
    generate_synthetic(tmp_path, num_classes=4, **opts)
    src = generate_synthetic(tmp_path, num_classes=2, **opts)
    assert sorted(p.name for p in (src / "UCF-101").iterdir()) == ["MoveA", "MoveB"]
    assert read_class_index(src / "ucfTrainTestlist" / "classInd.txt") == ["MoveA", "MoveB"]
    assert sha256_tree(src) == sha256_tree(generate_synthetic(tmp_path / "fresh", num_classes=2, **opts))


@pytest.mark.parametrize("bad, says", [(dict(fps=0), "--fps 0"), (dict(seed=-1), "--seed -1"),
                                       (dict(width=8192), "at most 4096 pixels")])
def test_bad_requests_are_refused(tmp_path, bad, says):
    from harness.errors import UserError

    opts = dict(num_classes=1, videos_per_class=1, frames=6, width=32, height=32, progress=False) | bad
    with pytest.raises(UserError, match=says):
        generate_synthetic(tmp_path, **opts)
