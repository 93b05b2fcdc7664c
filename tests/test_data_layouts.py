"""Layouts: every layout walks the source the same way (through symbolic links, safe against loops) and
accounts for every file: an entry of the manifest or a line of dataset.json's ``other_files`` with its reason."""

from __future__ import annotations

import os
import sys

import pytest
from _data_fixtures import frame_folder, gray_video, ucf_layout

from harness.cli import main
from harness.data.layouts import walk_tree
from harness.data.manifest import load_info
from harness.data.prepare import prepare_dataset

SMALL = dict(num_frames=4, frame_interval=2)


def other_files(out) -> dict[str, str]:
    return {item["path"]: item["reason"] for item in load_info(out)["other_files"]}


def test_taichi_follows_linked_train_and_test_folders(tmp_path):
    """train/more/ and test/ are links to folders elsewhere: all 4 videos are found, --split test finds test/."""
    src, elsewhere = tmp_path / "taichi", tmp_path / "disk2"
    gray_video(src / "train" / "a.mp4", 9)
    gray_video(elsewhere / "more" / "b.mp4", 9)
    frame_folder(elsewhere / "more" / "c", 9)
    gray_video(elsewhere / "test" / "d.mp4", 9)
    os.symlink(elsewhere / "more", src / "train" / "more")
    os.symlink(elsewhere / "test", src / "test")
    df = prepare_dataset("taichi", src, tmp_path / "out", progress=False, **SMALL)
    assert df[["path", "split", "status"]].values.tolist() == [
        ["test/d.mp4", "test", "ok"], ["train/a.mp4", "train", "ok"],
        ["train/more/b.mp4", "train", "ok"], ["train/more/c", "train", "ok"],
    ]
    test = prepare_dataset("taichi", src, tmp_path / "out-test", split="test", progress=False, **SMALL)
    assert test["path"].tolist() == ["test/d.mp4"]
    assert other_files(tmp_path / "out-test") == {
        "train/a.mp4": "not selected: in the train split (--split test)",
        "train/more/b.mp4": "not selected: in the train split (--split test)",
        "train/more/c/": "not selected: in the train split (--split test)",
    }


def test_sky_follows_a_linked_video_folder(tmp_path):
    src = tmp_path / "sky"
    frame_folder(src / "sky_train" / "vidA" / "vidA_1", 10, ext="jpg")
    frame_folder(tmp_path / "elsewhere" / "vidB" / "vidB_1", 10, ext="jpg")
    os.symlink(tmp_path / "elsewhere" / "vidB", src / "sky_train" / "vidB")
    df = prepare_dataset("sky", src, tmp_path / "out", progress=False, **SMALL)
    assert df["path"].tolist() == ["sky_train/vidA/vidA_1", "sky_train/vidB/vidB_1"]
    assert (df["status"] == "ok").all()


def test_loops_and_second_ways_in_are_walked_once_and_listed(tmp_path):
    src = tmp_path / "ffs"
    gray_video(src / "a" / "x.mp4", 9)
    os.symlink(src / "a", src / "a" / "loop")  # a link back to its own folder
    os.symlink(src, src / "a" / "root")  # a link back to the source
    os.symlink(src / "a", src / "b")  # a second way into a/
    os.symlink(src / "zz_real", src / "c_link")  # a link to a real folder walked later: the real path wins
    gray_video(src / "zz_real" / "y.mp4", 9)
    os.symlink(tmp_path / "nowhere", src / "broken.mp4")
    tree = walk_tree(src)
    assert tree.files == ["a/x.mp4", "zz_real/y.mp4"]
    assert dict(tree.other) == {
        "a/loop/": "symlink loop: leads back to a/ (not followed)",
        "a/root/": "symlink loop: leads back to the source folder (not followed)",
        "b/": "same folder as a/ (indexed there)",
        "c_link/": "same folder as zz_real/ (indexed there)",
        "broken.mp4": f"broken symlink: its target {tmp_path / 'nowhere'} does not exist",
    }
    df = prepare_dataset("ffs", src, tmp_path / "out", progress=False, **SMALL)
    assert df["path"].tolist() == ["a/x.mp4", "zz_real/y.mp4"]
    assert other_files(tmp_path / "out") == dict(tree.other)


def test_a_video_linked_in_twice_is_read_once(tmp_path):
    """train/b.mp4 is a link to all/b.mp4 (also under the source): one video, listed once, at its real path;
    links to a frame in the same folder (padding a clip) stay."""
    src = tmp_path / "ffs"
    gray_video(src / "all" / "a.mp4", 9)
    gray_video(src / "all" / "b.mp4", 9)
    gray_video(tmp_path / "elsewhere" / "c.mp4", 9)
    (src / "train").mkdir()
    os.symlink(src / "all" / "b.mp4", src / "train" / "b.mp4")  # sorts before nothing: the real path still wins
    os.symlink(src / "all" / "b.mp4", src / "a_b_again.mp4")
    os.symlink(tmp_path / "elsewhere" / "c.mp4", src / "train" / "c.mp4")  # outside the source: kept
    os.symlink(tmp_path / "elsewhere" / "c.mp4", src / "zz_c.mp4")  # the same outside file again
    frame_folder(src / "clip", 9)
    os.symlink(src / "clip" / "img_9.png", src / "clip" / "img_10.png")  # padding, same folder
    tree = walk_tree(src)
    assert "clip/img_10.png" in tree.files
    assert [f for f in tree.files if not f.startswith("clip/")] == ["all/a.mp4", "all/b.mp4", "train/c.mp4"]
    assert dict(tree.other) == {"a_b_again.mp4": "same file as all/b.mp4 (listed there)",
                                "train/b.mp4": "same file as all/b.mp4 (listed there)",
                                "zz_c.mp4": "same file as train/c.mp4 (listed there)"}


def test_ucf101_accounts_for_every_file(tmp_path):
    src = ucf_layout(tmp_path / "src", {"Archery": [9, 9], "Bowling": [9, 9]}, ext="avi")
    bowling = src / "UCF-101" / "Bowling"
    os.rename(bowling, tmp_path / "Bowling")  # the class folder lives elsewhere, linked in
    os.symlink(tmp_path / "Bowling", bowling)
    (src / "UCF101.rar").write_bytes(b"rar")
    (src / "UCF-101" / "Archery" / "notes.txt").write_text("x")
    (src / "UCF-101" / "Archery" / ".DS_Store").write_bytes(b"x")
    (src / "UCF-101" / "Archery" / "v_Archery_g02_c01.mp4").write_bytes(b"copy")  # the same video twice
    (src / "ucfTrainTestlist" / "README").write_text("x")
    df = prepare_dataset("ucf101", src, tmp_path / "out", split="train", progress=False, **SMALL)
    assert df["path"].tolist() == ["UCF-101/Archery/v_Archery_g02_c01.avi", "UCF-101/Bowling/v_Bowling_g02_c01.avi"]
    assert other_files(tmp_path / "out") == {
        "UCF-101/Archery/.DS_Store": "hidden file (not read)",
        "UCF-101/Archery/notes.txt": "not a video or frame: .txt files are not read",
        "UCF-101/Archery/v_Archery_g01_c01.avi": "not selected: in testlist01.txt (--split train)",
        "UCF-101/Archery/v_Archery_g02_c01.mp4":
            "duplicate: the same video as UCF-101/Archery/v_Archery_g02_c01.avi (indexed there)",
        "UCF-101/Bowling/v_Bowling_g01_c01.avi": "not selected: in testlist01.txt (--split train)",
        "UCF101.rar": "not read: outside UCF-101/ and ucfTrainTestlist/",
        "ucfTrainTestlist/README": "not read: not classInd.txt or a list of split 1 (--split-list)",
        "ucfTrainTestlist/classInd.txt": "read: the class names",
        "ucfTrainTestlist/testlist01.txt": "read: split 1's test list",
        "ucfTrainTestlist/testlist02.txt": "not read: not classInd.txt or a list of split 1 (--split-list)",
        "ucfTrainTestlist/testlist03.txt": "not read: not classInd.txt or a list of split 1 (--split-list)",
        "ucfTrainTestlist/trainlist01.txt": "read: split 1's train list",
        "ucfTrainTestlist/trainlist02.txt": "not read: not classInd.txt or a list of split 1 (--split-list)",
        "ucfTrainTestlist/trainlist03.txt": "not read: not classInd.txt or a list of split 1 (--split-list)",
    }


def test_every_file_is_an_entry_or_listed(tmp_path):
    """A messy FFS-like tree: each file (through the links) is in a manifest row or in other_files."""
    src = tmp_path / "ffs"
    gray_video(src / "v1.mp4", 9)
    frame_folder(src / "clips" / "c1", 9)
    (src / "clips" / "c1" / "meta.json").write_text("{}")
    (src / "clips" / "readme.md").write_text("x")
    (src / ".cache").mkdir()
    (src / ".cache" / "thumb.png").write_bytes(b"x")
    (src / "v2.mp4").write_bytes(b"")  # a zero-byte video: a skipped row
    df = prepare_dataset("ffs", src, tmp_path / "out", progress=False, **SMALL)
    other = other_files(tmp_path / "out")
    covered = set(other)
    for row in df.itertuples():
        covered |= {row.path} if row.kind == "video" else {f"{row.path}/{n}" for n in os.listdir(src / row.path)
                                                             if n.endswith(".png")}
    every = set()
    for dirpath, dirnames, filenames in os.walk(src):
        if os.path.basename(dirpath) == ".cache":
            every.add(".cache/")  # a hidden folder is listed once, as a folder
            dirnames[:] = []
            continue
        every |= {os.path.relpath(os.path.join(dirpath, f), src) for f in filenames}
    assert every <= covered and ".cache/" in other
    assert other["clips/c1/meta.json"] == "not a video or frame: .json files are not read"
    assert df.set_index("path").loc["v2.mp4", "reason"] == "zero-byte file"


def test_paths_are_printed_literally(tmp_path, monkeypatch, capsys):
    """A path holding rich markup ([bold], [red]) reaches the terminal as it is, in the summary and in errors."""
    src = tmp_path / "ffs"
    gray_video(src / "v[bold]1.mp4", 9)
    (src / "v[red]2.mp4").write_bytes(b"")
    (src / "n[i].txt").write_text("x")
    monkeypatch.setattr(sys, "argv", ["matten-bench", "prepare", "ffs", "--source", str(src), "--out",
                                      str(tmp_path / "out"), "--num-frames", "4", "--frame-interval", "2"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    err = capsys.readouterr().err
    assert "v[red]2.mp4" in err and "n[i].txt" in err
    missing = tmp_path / "x[bold]y"
    monkeypatch.setattr(sys, "argv", ["matten-bench", "prepare", "ffs", "--source", str(missing), "--out",
                                      str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: source folder {missing} does not exist"
