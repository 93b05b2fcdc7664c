"""The probe: quick and full checks, damaged files, turned videos, widths decord cannot decode, and the PyAV
reader that gives decord's pixels."""

from __future__ import annotations

import decord
import numpy as np
import pytest
from _data_fixtures import damage_middle, frame_folder, gray_video, marker_video, noise_video, set_rotation

from harness.data.clips import ClipDataset
from harness.data.manifest import load_info, load_manifest
from harness.data.prepare import prepare_dataset
from harness.data.probe import probe_frame_folder, probe_video, pyav_frames

SMALL = dict(num_frames=4, frame_interval=2)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A 120-frame H.264 mp4 with 15 % of its bytes zeroed in the middle, and a frame folder with two truncated
    JPEGs in the middle."""
    root = tmp_path_factory.mktemp("damaged")
    gray_video(root / "src" / "good.mp4", 120, size=(64, 64))
    damage_middle(noise_video(root / "src" / "bad.mp4", 120, size=(32, 32)))  # the frames fill the file
    folder = frame_folder(root / "src" / "frames", 30, size=(32, 32), ext="jpg")
    for name in ("img_14.jpg", "img_15.jpg"):
        (folder / name).write_bytes((folder / name).read_bytes()[:200])
    return root / "src"


def test_the_quick_check_does_not_see_damage_in_the_middle_the_full_check_does(damaged, tmp_path):
    assert probe_video(damaged / "bad.mp4", "quick").error == ""  # header, first and last frame are fine
    full = probe_video(damaged / "bad.mp4", "full")
    assert full.error.startswith("corrupt: FFmpeg stops after ") and " of 120 frames (InvalidDataError" in full.error
    assert probe_video(damaged / "good.mp4", "full").error == ""
    assert probe_frame_folder(damaged / "frames", "quick").error == ""
    assert probe_frame_folder(damaged / "frames", "full").error.startswith("corrupt frame img_14.jpg: OSError")

    quick = prepare_dataset("ffs", damaged, tmp_path, progress=False, **SMALL)
    assert (quick["status"] == "ok").all() and set(quick["check"]) == {"quick"}
    info = load_info(tmp_path)
    assert info["check"] == "quick" and info["check_text"].startswith("quick (header, first frame")
    full_df = prepare_dataset("ffs", damaged, tmp_path, check="full", progress=False, **SMALL).set_index("path")
    assert full_df.attrs["probed"] == 3  # a quick row does not answer a full check
    assert full_df["status"].to_dict() == {"bad.mp4": "skipped", "frames": "skipped", "good.mp4": "ok"}
    assert load_info(tmp_path)["check"] == "full" and set(full_df["check"]) == {"full"}
    again = prepare_dataset("ffs", damaged, tmp_path, check="quick", progress=False, **SMALL)
    assert again.attrs == {"probed": 0, "reused": 3}  # a full row answers a quick check
    assert (again["status"] == "skipped").sum() == 2


@pytest.mark.parametrize("degrees, corner", [(90, "top-right"), (180, "bottom-right"), (270, "bottom-left")])
def test_turned_videos_are_read_turned_and_recorded(tmp_path, degrees, corner):
    """A phone's "rotate" tag: the loader reads the frames as a player shows them (decord turns them); the
    manifest has the turned size and the rotation."""
    video = set_rotation(marker_video(tmp_path / "src" / "v.mp4", 12, size=(64, 32)), degrees)
    df = prepare_dataset("ffs", tmp_path / "src", tmp_path / "out", progress=False, **SMALL)
    row = df.iloc[0]
    assert (row.status, row.rotation) == ("ok", degrees)
    assert (row.width, row.height) == ((32, 64) if degrees in (90, 270) else (64, 32))
    frame = decord.VideoReader(str(video)).get_batch([0]).asnumpy()[0].mean(-1)
    h, w = frame.shape
    corners = {"top-left": frame[:4, :4], "top-right": frame[:4, w - 4 :], "bottom-left": frame[h - 4 :, :4],
               "bottom-right": frame[h - 4 :, w - 4 :]}
    assert [name for name, px in corners.items() if px.mean() > 128] == [corner]
    clip = ClipDataset(tmp_path / "out", num_frames=4, frame_interval=2, size=32, crop="none", train=False,
                       uint8=True)[0]["video"]
    assert clip.shape == (4, 32, 32, 3)


def test_a_rotation_that_is_not_a_quarter_turn_is_refused(tmp_path):
    found = probe_video(set_rotation(marker_video(tmp_path / "v.mp4", 10), 45))
    assert found.error.startswith("rotated 45°: the loader turns frames by quarter turns only; re-encode it")


@pytest.mark.parametrize("width", [24, 48, 72])
def test_widths_decord_cannot_decode_say_so(tmp_path, width):
    found = probe_video(gray_video(tmp_path / "v.mp4", 10, size=(width, 32)))
    suggest = {24: 32, 48: 64, 72: 96}[width]
    assert found.error.startswith(f"width {width} px: decord ") and "corrupt" not in found.error
    assert found.error.endswith(f"re-encode it to another width, e.g. ffmpeg -i v.mp4 -vf scale={suggest}:-2 OUT")
    assert probe_video(gray_video(tmp_path / "ok.mp4", 10, size=(width + 8, 32))).error == ""


def test_a_turned_video_whose_turned_width_decord_cannot_decode(tmp_path):
    found = probe_video(set_rotation(gray_video(tmp_path / "v.mp4", 10, size=(64, 48)), 90))
    assert found.error.startswith("width 48 px after its 90° rotation: decord ")
    assert probe_video(set_rotation(gray_video(tmp_path / "w.mp4", 10, size=(64, 48)), 180)).error == ""


@pytest.mark.parametrize("container, degrees", [("mp4", 0), ("avi", 0), ("mp4", 90), ("mp4", 180)])
def test_pyav_frames_are_decords_frames(tmp_path, container, degrees):
    """The loader's fallback reader gives decord's pixels, for any window (B-frames, .avi, turned videos)."""
    video = noise_video(tmp_path / f"v.{container}", 40, container=container)
    if degrees:
        set_rotation(video, degrees)
    reader = decord.VideoReader(str(video), num_threads=1)
    for indices in ([0, 1, 2, 3], [5, 9, 13, 17], [20, 26, 33, 39], [39]):
        np.testing.assert_array_equal(pyav_frames(video, indices), reader.get_batch(indices).asnumpy())


def test_older_manifests_are_refused_with_the_fix(tmp_path):
    gray_video(tmp_path / "src" / "a.mp4", 9)
    prepare_dataset("ffs", tmp_path / "src", tmp_path / "out", progress=False, **SMALL)
    df = load_manifest(tmp_path / "out").drop(columns=["check", "rotation"])
    df.to_parquet(tmp_path / "out" / "manifest.parquet")
    with pytest.raises(Exception, match=r"older matten-bench \(no check, rotation column\): run `matten-bench "):
        load_manifest(tmp_path / "out")


def test_a_damaged_manifest_or_description_is_one_error_with_the_fix(tmp_path):
    from harness.data.manifest import load_info
    from harness.errors import UserError

    gray_video(tmp_path / "src" / "a.mp4", 9)
    prepare_dataset("ffs", tmp_path / "src", tmp_path / "out", progress=False, **SMALL)
    manifest = tmp_path / "out" / "manifest.parquet"
    manifest.write_bytes(manifest.read_bytes()[:100])  # a copy cut short
    with pytest.raises(UserError, match=r"manifest.parquet cannot be read .*run `matten-bench prepare` on it again"):
        load_manifest(tmp_path / "out")
    for text in ("{not json", "[1, 2]"):
        (tmp_path / "out" / "dataset.json").write_text(text)
        with pytest.raises(UserError, match="run `matten-bench prepare` on it again"):
            load_info(tmp_path / "out")
