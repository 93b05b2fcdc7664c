"""`prepare`: layouts and manifests of every dataset kind, skipped videos, re-runs, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from _data_fixtures import frame_folder, gray_video, ucf_layout

from harness.cli import main
from harness.data import prepare as prepare_mod
from harness.data.manifest import COLUMNS, load_info, load_manifest, manifest_fingerprint
from harness.data.prepare import prepare_dataset
from harness.errors import UserError
from harness.video import write_video

SMALL = dict(num_frames=4, frame_interval=2)  # "too short" means fewer than 8 frames in these tests


@pytest.fixture(scope="module")
def ucf_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    return ucf_layout(root, {"ApplyEyeMakeup": [10, 10, 12], "Basketball": [10, 9]}, ext="avi")


def test_ucf101_all_labels_splits_and_columns(ucf_source, tmp_path):
    df = prepare_dataset("ucf101", ucf_source, tmp_path, split="all", progress=False, **SMALL)
    assert list(df.columns) == list(COLUMNS)
    assert df["path"].tolist() == sorted(df["path"]) and len(df) == 5
    row = df.set_index("path").loc["UCF-101/Basketball/v_Basketball_g02_c01.avi"]
    assert (row.label, row.class_name, row.split, row.status) == (1, "Basketball", "train", "ok")  # classInd "2" → 1
    assert (row.frames, row.width, row.height, row.fps) == (9, 32, 24, 25.0)
    assert df.groupby("split").size().to_dict() == {"test": 2, "train": 3}  # group 1 of each class is test
    assert set(df["label"]) == {0, 1}
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["split"] == "all" and info["split_list"] == 1 and info["classes"] == ["ApplyEyeMakeup", "Basketball"]
    assert info["source"] == str(ucf_source.resolve())
    assert info["counts"] == {"total": 5, "ok": 5, "skipped": 0, "ok_per_split": {"test": 2, "train": 3}}
    rec = json.loads((tmp_path / "records" / "prepare.json").read_text())  # the run ledger
    assert rec["status"] == "complete" and rec["config"]["dataset"] == "ucf101"
    assert load_manifest(tmp_path, ok_only=True).equals(df)


def test_ucf101_train_test_and_split_list(ucf_source, tmp_path):
    train = prepare_dataset("ucf101", ucf_source, tmp_path / "a", split="train", progress=False, **SMALL)
    test = prepare_dataset("ucf101", ucf_source, tmp_path / "b", split="test", progress=False, **SMALL)
    assert set(train["split"]) == {"train"} and len(train) == 3
    assert set(test["split"]) == {"test"} and len(test) == 2
    assert load_info(tmp_path / "b")["split"] == "test"
    # official split 2: its own list files decide membership
    lists = ucf_source / "ucfTrainTestlist"
    saved = {n: (lists / n).read_text() for n in ("trainlist02.txt", "testlist02.txt")}
    try:
        (lists / "testlist02.txt").write_text("Basketball/v_Basketball_g02_c01.avi\n")
        (lists / "trainlist02.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n")
        df = prepare_dataset("ucf101", ucf_source, tmp_path / "c", split="test", split_list=2, progress=False, **SMALL)
        assert df["path"].tolist() == ["UCF-101/Basketball/v_Basketball_g02_c01.avi"]
        assert load_info(tmp_path / "c")["split_list"] == 2
    finally:
        for n, text in saved.items():
            (lists / n).write_text(text)


def test_ucf101_mp4_copies_match_avi_lists(tmp_path):
    src = ucf_layout(tmp_path / "src", {"Drumming": [9, 9]}, ext="mp4")
    df = prepare_dataset("ucf101", src, tmp_path / "out", progress=False, **SMALL)
    assert df["path"].tolist() == ["UCF-101/Drumming/v_Drumming_g01_c01.mp4", "UCF-101/Drumming/v_Drumming_g02_c01.mp4"]
    assert df["split"].tolist() == ["test", "train"] and (df["status"] == "ok").all()


def test_bad_videos_are_skipped_with_reasons(tmp_path):
    src = ucf_layout(tmp_path / "src", {"Biking": [10, 10, 10, 10, 10, 5]}, ext="avi")
    videos = src / "UCF-101" / "Biking"
    (videos / "v_Biking_g02_c01.avi").write_bytes(b"")  # zero-byte
    (videos / "v_Biking_g03_c01.avi").write_bytes(b"this is not a video" * 100)  # corrupt
    noise = np.random.default_rng(0).integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
    write_video(videos / "v_Biking_g04_c01.avi", noise, fps=25, container="avi")  # big frames, small header
    whole = (videos / "v_Biking_g04_c01.avi").read_bytes()
    (videos / "v_Biking_g04_c01.avi").write_bytes(whole[: len(whole) * 6 // 10])  # truncated
    (videos / "v_Biking_g05_c01.avi").unlink()  # listed in trainlist01.txt, missing on disk
    gray_video(src / "UCF-101" / "Unknown" / "v_Unknown_g01_c01.avi", 10, container="avi")  # class not in classInd
    df = prepare_dataset("ucf101", src, tmp_path / "out", progress=False, **SMALL)
    assert df.attrs == {"probed": 5, "reused": 0}  # neither the missing file nor the unknown class is probed
    df = df.set_index("path")
    reason = df["reason"].to_dict()
    assert df.loc["UCF-101/Biking/v_Biking_g01_c01.avi", "status"] == "ok"
    assert reason["UCF-101/Biking/v_Biking_g02_c01.avi"] == "zero-byte file"
    assert reason["UCF-101/Biking/v_Biking_g03_c01.avi"].startswith("corrupt:")
    assert reason["UCF-101/Biking/v_Biking_g04_c01.avi"].startswith("truncated: header promises 30 frames, ")
    assert reason["UCF-101/Biking/v_Biking_g05_c01.avi"] == "missing: listed in trainlist01.txt, no such file"
    assert reason["UCF-101/Biking/v_Biking_g06_c01.avi"] == "too short: 5 frames < 4 x 2 = 8"
    assert reason["UCF-101/Unknown/v_Unknown_g01_c01.avi"] == "class folder 'unknown' is not in classInd.txt"
    assert (df["status"] == "ok").sum() == 1 and (df["status"] == "skipped").sum() == 6
    assert load_info(tmp_path / "out")["counts"]["skipped"] == 6


def test_rerun_reuses_fingerprints_and_gives_the_same_manifest(ucf_source, tmp_path, monkeypatch):
    first = prepare_dataset("ucf101", ucf_source, tmp_path, sha256=True, progress=False, **SMALL)
    assert first.attrs["probed"] == 5 and first["sha256"].str.len().eq(64).all()
    bytes1 = (tmp_path / "manifest.parquet").read_bytes()
    info1, fp1 = load_info(tmp_path), manifest_fingerprint(tmp_path)

    def no_probe(*a, **k):
        raise AssertionError("an unchanged video was probed again")

    monkeypatch.setattr(prepare_mod.probe, "probe_video", no_probe)
    monkeypatch.setattr(prepare_mod, "sha256_file", no_probe)
    second = prepare_dataset("ucf101", ucf_source, tmp_path, sha256=True, progress=False, **SMALL)
    assert second.attrs == {"probed": 0, "reused": 5}
    pd.testing.assert_frame_equal(first, second)
    assert (tmp_path / "manifest.parquet").read_bytes() == bytes1
    assert load_info(tmp_path) == info1 and manifest_fingerprint(tmp_path) == fp1


def test_changed_video_is_probed_again(ucf_source, tmp_path):
    src = ucf_layout(tmp_path / "src", {"Fencing": [9, 9]})
    prepare_dataset("ucf101", src, tmp_path / "out", progress=False, **SMALL)
    gray_video(src / "UCF-101" / "Fencing" / "v_Fencing_g02_c01.avi", 12, container="avi")
    df = prepare_dataset("ucf101", src, tmp_path / "out", progress=False, **SMALL)
    assert df.attrs["probed"] == 1 and df["frames"].tolist() == [9, 12]


def test_ffs_videos_and_frame_folders(tmp_path):
    src = tmp_path / "ffs"
    gray_video(src / "000.mp4", 9)
    gray_video(src / "001.mp4", 9)
    frame_folder(src / "frames" / "002", 10, size=(24, 24), ext="jpg")
    df = prepare_dataset("ffs", src, tmp_path / "out", progress=False, **SMALL)
    assert df[["path", "kind", "frames", "label", "split"]].values.tolist() == [
        ["000.mp4", "video", 9, -1, "none"],
        ["001.mp4", "video", 9, -1, "none"],
        ["frames/002", "frames", 10, -1, "none"],
    ]
    assert (df["status"] == "ok").all() and df["fps"].isna().tolist() == [False, False, True]
    assert load_info(tmp_path / "out")["num_classes"] == 0


def test_sky_two_levels_of_frame_folders(tmp_path):
    src = tmp_path / "sky"
    frame_folder(src / "sky_train" / "vidA" / "vidA_1", 10, ext="jpg")
    frame_folder(src / "sky_train" / "vidA" / "vidA_2", 3, ext="jpg")
    frame_folder(src / "sky_test" / "vidB" / "vidB_1", 12, ext="jpg")
    df = prepare_dataset("sky", src, tmp_path / "out", progress=False, **SMALL)
    assert df[["path", "frames", "split", "status"]].values.tolist() == [
        ["sky_test/vidB/vidB_1", 12, "test", "ok"],
        ["sky_train/vidA/vidA_1", 10, "train", "ok"],
        ["sky_train/vidA/vidA_2", 3, "train", "skipped"],
    ]
    only_test = prepare_dataset("sky", src, tmp_path / "out2", split="test", progress=False, **SMALL)
    assert only_test["path"].tolist() == ["sky_test/vidB/vidB_1"]


def test_taichi_train_test_frames_and_mp4(tmp_path):
    src = tmp_path / "taichi"
    frame_folder(src / "train" / "clip0", 10, size=(32, 32))
    gray_video(src / "test" / "clip1.mp4", 9, size=(32, 32))
    df = prepare_dataset("taichi", src, tmp_path / "out", split="train", progress=False, **SMALL)
    rows = df[["path", "kind", "frames", "width", "split"]].values.tolist()
    assert rows == [["train/clip0", "frames", 10, 32, "train"]]
    df = prepare_dataset("taichi", src, tmp_path / "out", split="all", progress=False, **SMALL)
    assert df["split"].tolist() == ["test", "train"]


def test_synthetic_is_prepared_like_ucf101(tmp_path):
    opts = dict(num_classes=2, videos_per_class=3, frames=8, width=32, height=32)
    df = prepare_dataset("synthetic", None, tmp_path, synthetic_options=opts, progress=False, **SMALL)
    info = load_info(tmp_path)
    assert info["dataset"] == "synthetic" and info["classes"] == ["MoveA", "MoveB"]
    assert len(df) == 6 and (df["status"] == "ok").all() and sorted(set(df["label"])) == [0, 1]
    assert (tmp_path / "source" / "UCF-101" / "MoveB" / "v_MoveB_g02_c01.mp4").is_file()


# ------------------------------------------------------------------------------------------ bad input


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`matten-bench ARGS` through harness.cli.main (as the console script runs it): (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["matten-bench", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


def test_missing_source_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "prepare", "ucf101", "--source",
                           str(tmp_path / "nope"), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"error: source folder {tmp_path / 'nope'} does not exist"


@pytest.mark.parametrize(
    "dataset, make, message",
    [
        ("ucf101", lambda s: (s / "ucfTrainTestlist").mkdir(parents=True),
         "wrong layout: expected folder UCF-101/ (from UCF101.rar) in"),
        ("ucf101", lambda s: (s / "UCF-101").mkdir(parents=True),  # no lists: --split all reads the class folders
         "empty dataset: no videos found for --split all in"),
        ("sky", lambda s: (s / "other").mkdir(parents=True),
         "wrong layout: expected folders sky_train/ and sky_test/ in"),
        ("sky", lambda s: frame_folder(s / "sky_train" / "flat", 3, ext="jpg"),
         "wrong layout: expected sky_train/<video>/<clip>/*.jpg (two levels of frame folders), found sky_train/flat"),
        ("ffs", lambda s: (s / "empty").mkdir(parents=True), "empty dataset: no videos or frame folders"),
        ("taichi", lambda s: frame_folder(s / "clip", 3), "no train videos in"),
        ("ffs", lambda s: (s / "x.mp4").parent.mkdir(parents=True) or (s / "x.mp4").write_bytes(b""),
         "empty dataset: none of the 1 videos in"),
    ],
)
def test_bad_layouts_exit_2_with_message(tmp_path, monkeypatch, capsys, dataset, make, message):
    src = tmp_path / "src"
    make(src)
    args = ["prepare", dataset, "--source", str(src), "--out", str(tmp_path / "out")]
    if dataset == "taichi":
        args += ["--split", "train"]
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[")]  # ffmpeg/decord log lines
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), err


def test_bad_options_exit_2(tmp_path, monkeypatch, capsys, ucf_source):
    out = str(tmp_path / "out")
    code, err = run_main(monkeypatch, capsys, "prepare", "kinetics", "--source", str(ucf_source), "--out", out)
    assert code == 2 and err.startswith("error: unknown dataset 'kinetics'")
    code, err = run_main(monkeypatch, capsys, "prepare", "ucf101", "--out", out)
    assert code == 2 and err.startswith("error: prepare ucf101 needs --source DIR")
    code, err = run_main(monkeypatch, capsys, "prepare", "ucf101", "--source", str(ucf_source), "--out", out,
                         "--split", "val")
    assert code == 2 and err.startswith("error: --split must be one of train, test, all; got 'val'")
    code, err = run_main(monkeypatch, capsys, "prepare", "synthetic", "--out", out, "--frames", "many")
    assert code == 2 and err.startswith("error: --frames takes N or LO-HI")


def test_prepare_command_prints_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["matten-bench", "prepare", "synthetic", "--out", str(tmp_path), "--classes",
                                      "2", "--videos-per-class", "2", "--frames", "10", "--width", "32", "--height",
                                      "32", "--num-frames", "4", "--frame-interval", "2"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    err = capsys.readouterr().err
    assert "synthetic: 4 videos" in err and "probed 4, reused 0" in err


def test_user_error_type():
    with pytest.raises(UserError, match="unknown dataset"):
        prepare_dataset("nope", None, "/nonexistent-out")


def test_corrupt_frame_folder_is_skipped(tmp_path):
    src = tmp_path / "ffs"
    frame_folder(src / "good", 10)
    bad = frame_folder(src / "bad", 10)
    (bad / "img_10.png").write_bytes((bad / "img_10.png").read_bytes()[:20])  # the last frame is cut short
    df = prepare_dataset("ffs", src, tmp_path / "out", progress=False, **SMALL).set_index("path")
    assert df.loc["good", "status"] == "ok"
    assert df.loc["bad", "status"] == "skipped" and df.loc["bad", "reason"].startswith("corrupt frame img_10.png:")


def test_a_ucf101_style_folder_of_ones_own_needs_no_split_files_with_split_all(tmp_path):
    import shutil

    src = ucf_layout(tmp_path / "src", {"Walk": [60, 60], "Jump": [60, 60]})
    shutil.rmtree(src / "ucfTrainTestlist")
    df = prepare_dataset("ucf101", src, tmp_path / "out", progress=False)
    labels = sorted(zip(df["class_name"], df["label"], strict=True))
    assert labels == [("Jump", 0), ("Jump", 0), ("Walk", 1), ("Walk", 1)]  # classes: the folders, sorted
    with pytest.raises(UserError) as e:  # a split needs the lists: all three named at once, and the way out
        prepare_dataset("ucf101", src, tmp_path / "out2", split="train", progress=False)
    assert ("ucfTrainTestlist/classInd.txt, ucfTrainTestlist/trainlist01.txt, ucfTrainTestlist/testlist01.txt"
            in str(e.value)) and "--split all" in str(e.value)


def test_a_class_without_a_usable_video_fails_naming_it(tmp_path):
    src = ucf_layout(tmp_path / "src", {"Walk": [60, 60], "Jump": [60, 60]})
    for video in (src / "UCF-101" / "Jump").iterdir():
        video.write_bytes(b"")  # every Jump video unreadable
    with pytest.raises(UserError, match=r"1 class\(es\) without a usable video: Jump; their videos' reasons are in"):
        prepare_dataset("ucf101", src, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "manifest.parquet").exists()  # written, for the reasons
