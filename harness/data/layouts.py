"""Find the videos of each dataset in the layout its users have on disk.

A layout turns a source folder into :class:`Entry` rows (relative path, kind, label, split) and
the class names; it checks the layout and raises :class:`UserError` naming the file or folder it
expected. It probes nothing (``probe.py`` does that).

- ucf101 (and synthetic): ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi|mp4`` and ``ucfTrainTestlist/``
  with ``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based; 0-based labels here) and the official lists
  ``trainlist0{1,2,3}.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``) and
  ``testlist0{1,2,3}.txt`` (path only). Videos are matched to list lines by class folder and file
  stem, case-insensitively (so .mp4 copies of the .avi files match too).
- ffs, taichi: any mix of video files and frame folders (a folder holding images) below the source;
  a ``train``/``test`` folder on the way sets the split (StyleGAN-V / Latte keep Taichi-HD as
  ``train/`` and ``test/``).
- sky: ``sky_train/<video>/<clip>/*.jpg`` and ``sky_test/...``: each clip folder is one video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.data.probe import IMAGE_EXTS, VIDEO_EXTS
from harness.errors import UserError

SPLITS = ("train", "test", "all")


@dataclass
class Entry:
    path: str  # relative to the source root, POSIX separators
    kind: str  # "video" | "frames"
    label: int = -1
    class_name: str = ""
    split: str = "none"  # "train" | "test" | "none" (the copy says nothing)
    skip_reason: str = ""  # set when the layout already knows the entry cannot be used


@dataclass
class Layout:
    entries: list[Entry]
    classes: list[str] = field(default_factory=list)
    split_list: int | None = None  # UCF101's official split 1/2/3, when used


def find_entries(dataset: str, source: Path, split: str, split_list: int = 1) -> Layout:
    """The entries of ``dataset`` under ``source`` for ``split`` ("train" | "test" | "all")."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    if dataset in ("ucf101", "synthetic"):
        return ucf101_layout(source, split, split_list)
    if dataset == "sky":
        return sky_layout(source, split)
    if dataset in ("ffs", "taichi"):
        return folder_layout(source, split, dataset)
    raise UserError(f"unknown dataset {dataset!r}; expected ucf101, ffs, sky, taichi or synthetic")


# ----------------------------------------------------------------------------- ucf101


def read_class_index(path: Path) -> list[str]:
    """classInd.txt → class names in label order (the file's 1-based numbers become 0-based)."""
    names: dict[int, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise UserError(f"{path} line {n}: expected '<number> <ClassName>', got {line.strip()!r}")
        names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise UserError(f"{path}: class numbers must run 1..{len(names)} without gaps")
    return [names[i] for i in range(1, len(names) + 1)]


def read_split_list(path: Path) -> list[str]:
    """A train/test list → its relative video paths (the label column of trainlists is dropped)."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _key(rel: str) -> str:
    """``Class/v_Class_g01_c01.avi`` → ``class/v_class_g01_c01``: how a list line finds its file."""
    parts = rel.replace("\\", "/").split("/")
    return f"{parts[-2]}/{Path(parts[-1]).stem}".lower()


def ucf101_layout(source: Path, split: str, split_list: int) -> Layout:
    videos_dir, lists_dir = source / "UCF-101", source / "ucfTrainTestlist"
    if split_list not in (1, 2, 3):
        raise UserError(f"--split-list must be 1, 2 or 3 (UCF101's official splits); got {split_list}")
    if not videos_dir.is_dir():
        raise UserError(f"wrong layout: expected folder UCF-101/ (from UCF101.rar) in {source}")
    needed = ["classInd.txt", f"trainlist0{split_list}.txt", f"testlist0{split_list}.txt"]
    for name in needed:
        if not (lists_dir / name).is_file():
            raise UserError(
                f"wrong layout: expected file ucfTrainTestlist/{name} (from UCF101TrainTestSplits) in {source}"
            )
    classes = read_class_index(lists_dir / "classInd.txt")
    label_of = {c.lower(): i for i, c in enumerate(classes)}
    train = {_key(p): p for p in read_split_list(lists_dir / f"trainlist0{split_list}.txt")}
    test = {_key(p): p for p in read_split_list(lists_dir / f"testlist0{split_list}.txt")}

    on_disk: dict[str, str] = {}
    for class_dir in sorted(p for p in videos_dir.iterdir() if p.is_dir()):
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in VIDEO_EXTS and not f.name.startswith("."):
                on_disk[_key(f"{class_dir.name}/{f.name}")] = f"UCF-101/{class_dir.name}/{f.name}"

    wanted = {"train": train.keys(), "test": test.keys(), "all": on_disk.keys() | train.keys() | test.keys()}[split]
    entries = []
    for key in sorted(wanted):
        cls = key.split("/")[0]
        label = label_of.get(cls, -1)
        name = classes[label] if label >= 0 else cls
        row_split = "train" if key in train else "test" if key in test else "none"
        if key in on_disk:
            reason = "" if label >= 0 else f"class folder {cls!r} is not in classInd.txt"
            entries.append(Entry(on_disk[key], "video", label, name, row_split, reason))
        else:
            listed = f"trainlist0{split_list}.txt" if key in train else f"testlist0{split_list}.txt"
            rel = f"UCF-101/{train.get(key) or test.get(key)}"
            entries.append(Entry(rel, "video", label, name, row_split, f"missing: listed in {listed}, no such file"))
    return Layout(entries, classes, split_list)


# ----------------------------------------------------------------------------- ffs, taichi, sky


def walk_videos(root: Path, base: Path) -> list[Entry]:
    """Every video file and every frame folder below ``root``, paths relative to ``base``, sorted."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        files = [f for f in sorted(filenames) if not f.startswith(".")]
        if any(Path(f).suffix.lower() in IMAGE_EXTS for f in files):
            entries.append(Entry(here.relative_to(base).as_posix(), "frames"))
        for f in files:
            if Path(f).suffix.lower() in VIDEO_EXTS:
                entries.append(Entry((here / f).relative_to(base).as_posix(), "video"))
    return sorted(entries, key=lambda e: e.path)


def split_from_path(rel: str, names: dict[str, str]) -> str:
    for part in rel.split("/")[:-1] if "/" in rel else []:
        if part.lower() in names:
            return names[part.lower()]
    return "none"


def _select_split(entries: list[Entry], split: str, source: Path, hint: str) -> list[Entry]:
    if split == "all":
        return entries
    chosen = [e for e in entries if e.split == split]
    if not chosen:
        raise UserError(
            f"no {split} videos in {source}: expected a {hint} folder for --split {split} (or use --split all)"
        )
    return chosen


def folder_layout(source: Path, split: str, dataset: str) -> Layout:
    entries = walk_videos(source, source)
    if not entries:
        exts = " ".join(VIDEO_EXTS + IMAGE_EXTS)
        raise UserError(f"empty dataset: no videos or frame folders ({exts}) under {source}")
    for e in entries:
        e.split = split_from_path(e.path, {"train": "train", "test": "test"})
    return Layout(_select_split(entries, split, source, f"{split}/"))


def sky_layout(source: Path, split: str) -> Layout:
    folders = {"train": source / "sky_train", "test": source / "sky_test"}
    wanted = ["train", "test"] if split == "all" else [split]
    present = [s for s in wanted if folders[s].is_dir()]
    if split != "all" and not present:
        raise UserError(f"wrong layout: expected folder sky_{split}/ in {source}")
    if not present:
        raise UserError(f"wrong layout: expected folders sky_train/ and sky_test/ in {source}")
    entries = []
    for s in present:
        for e in walk_videos(folders[s], source):
            depth = len(e.path.split("/")) - 1  # sky_train/<video>/<clip> → 2
            if e.kind != "frames" or depth != 2:
                raise UserError(
                    f"wrong layout: expected sky_{s}/<video>/<clip>/*.jpg (two levels of frame folders), found {e.path}"
                )
            e.split = s
            entries.append(e)
    if not entries:
        raise UserError(f"empty dataset: no frame folders under {', '.join(f'sky_{s}/' for s in present)} in {source}")
    return Layout(entries)
