"""Find the videos of each dataset in the layout its users have on disk, and account for every other file.

A layout turns a source folder into :class:`Entry` rows (relative path, kind, label, split) and
the class names; it checks the layout and raises :class:`UserError` naming the file or folder it
expected. It probes nothing (``probe.py`` does that).

Every layout walks the source the same way (:func:`walk_tree`): symbolic links to folders and files are
followed (a dataset spread over disks by links is read whole), a link that leads back to a folder above
it (a loop) or to a folder already walked is not walked twice, a link to a video already found in another
folder is not read twice, and hidden folders (``.git``, ``.cache``)
are not entered. Whatever is not a video or a frame folder of the chosen split ends in
``Layout.other`` with the reason (not a video, hidden, another split, a broken link, a loop, ...):
every file under the source is either an entry or listed there.

- ucf101 (and synthetic): ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi|mp4`` and ``ucfTrainTestlist/``
  with ``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based; 0-based labels here) and the official lists
  ``trainlist0{1,2,3}.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``) and
  ``testlist0{1,2,3}.txt`` (path only). Videos are matched to list lines by class folder and file
  stem, case-insensitively (so .mp4 copies of the .avi files match too).
- ffs, taichi, folder (any folder of videos, e.g. a model's generated mp4s): any mix of video files and
  frame folders (a folder holding images) below the source;
  a ``train``/``test`` folder on the way sets the split (StyleGAN-V / Latte keep Taichi-HD as
  ``train/`` and ``test/``).
- sky: ``sky_train/<video>/<clip>/*.jpg`` and ``sky_test/...``: each clip folder is one video.
"""

from __future__ import annotations

import os
from collections import defaultdict
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
    # (path, reason) of everything under the source that is not an entry; folders end with "/"
    other: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Tree:
    """What :func:`walk_tree` found: every file (relative POSIX paths through links, sorted) and what it did not
    walk, with the reason (folders end with "/")."""

    files: list[str]
    other: list[tuple[str, str]]


def walk_tree(root: Path) -> Tree:
    """Every file under ``root``, following symbolic links, safe against loops.

    Folders reached by a real path are walked before folders reached through a link, so a link to a folder
    that is also under ``root`` is the one listed ("same folder as ...") and its files keep their real paths.
    Not walked, each listed in ``Tree.other``: hidden files and folders (names starting with "."), links
    whose target is missing, links back to a folder above them (loops), a second way into a folder already
    walked, folders that cannot be listed, anything that is neither a file nor a folder, and a link to a file
    already listed from another folder (a video reached twice would count twice in FVD's statistics). Links
    to a file in the same folder stay (a frame folder may pad a short clip with links to its last frame), and
    so do hard links (they are files in their own right).
    """
    files: list[str] = []
    file_links: list[tuple[str, tuple[int, int]]] = []  # (path, target's (device, inode)) of links to files
    real_files: dict[tuple[int, int], str] = {}  # (device, inode) -> the first path it is listed under
    other: list[tuple[str, str]] = []
    seen: dict[tuple[int, int], str] = {}  # (device, inode) of each folder walked -> its path
    links: list[tuple[str, Path, frozenset]] = []  # folders behind links, walked after the real ones

    def visit(path: Path, rel: str, ancestors: frozenset) -> None:
        try:
            st = path.stat()
        except OSError as e:
            other.append((f"{rel}/", f"cannot follow: {e.strerror or e}"))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            where = f"{seen[key]}/" if seen[key] else "the source folder"
            if key in ancestors:
                other.append((f"{rel}/", f"symlink loop: leads back to {where} (not followed)"))
            else:
                other.append((f"{rel}/", f"same folder as {where} (indexed there)"))
            return
        seen[key] = rel
        inside = ancestors | {key}
        try:
            children = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as e:
            other.append((f"{rel}/" if rel else "./", f"unreadable folder: {e.strerror or e}"))
            return
        for child in children:
            crel = f"{rel}/{child.name}" if rel else child.name
            try:
                is_dir, is_file = child.is_dir(), child.is_file()  # both through a link
            except OSError as e:  # e.g. a link to itself (too many levels of links)
                other.append((crel, f"cannot follow: {e.strerror or e}"))
                continue
            if child.name.startswith("."):
                other.append((f"{crel}/" if is_dir else crel, f"hidden {'folder' if is_dir else 'file'} (not read)"))
            elif is_dir:
                if child.is_symlink():
                    links.append((crel, Path(child.path), inside))
                else:
                    visit(Path(child.path), crel, inside)
            elif is_file:
                if child.is_symlink():
                    target = child.stat()
                    file_links.append((crel, (target.st_dev, target.st_ino)))
                else:
                    files.append(crel)
                    real_files.setdefault((child.stat().st_dev, child.stat().st_ino), crel)
            elif child.is_symlink() and not os.path.exists(child.path):
                other.append((crel, f"broken symlink: its target {os.readlink(child.path)} does not exist"))
            else:
                other.append((crel, "not a file or folder (a socket, pipe or device): not read"))

    visit(root, "", frozenset())
    while links:
        links.sort(key=lambda x: x[0])
        rel, path, ancestors = links.pop(0)
        visit(path, rel, ancestors)
    for rel, key in sorted(file_links):  # after every real file, so a link never hides the real path
        first = real_files.setdefault(key, rel)
        if first != rel and os.path.dirname(first) != os.path.dirname(rel):
            other.append((rel, f"same file as {first} (listed there)"))
        else:
            files.append(rel)
    return Tree(sorted(files), sorted(other))


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def not_read(path: str) -> tuple[str, str]:
    """A file that is neither a video nor a frame, with its reason."""
    ext = _suffix(path)
    return path, f"not a video or frame: {ext + ' files are' if ext else 'a file without an extension is'} not read"


def index_files(files: list[str]) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Video files and frame folders (a folder holding images) among ``files``, and the other files with why."""
    by_dir: dict[str, list[str]] = defaultdict(list)
    for f in files:
        parent, _, name = f.rpartition("/")
        by_dir[parent].append(name)
    entries, other = [], []
    for folder, names in by_dir.items():
        if any(_suffix(n) in IMAGE_EXTS for n in names):
            entries.append(Entry(folder or ".", "frames"))
        for n in names:
            path = f"{folder}/{n}" if folder else n
            if _suffix(n) in VIDEO_EXTS:
                entries.append(Entry(path, "video"))
            elif _suffix(n) not in IMAGE_EXTS:  # an image is a frame of its folder's entry
                other.append(not_read(path))
    return sorted(entries, key=lambda e: e.path), other


def as_listed(e: Entry) -> str:
    """How an entry that is left out is listed: a frame folder with a trailing "/"."""
    return f"{e.path}/" if e.kind == "frames" else e.path


def find_entries(dataset: str, source: Path, split: str, split_list: int = 1) -> Layout:
    """The entries of ``dataset`` under ``source`` for ``split`` ("train" | "test" | "all")."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    if dataset in ("ucf101", "synthetic"):
        return ucf101_layout(source, split, split_list)
    if dataset == "sky":
        return sky_layout(source, split)
    if dataset in ("ffs", "taichi", "folder"):
        return folder_layout(source, split, dataset)
    raise UserError(f"unknown dataset {dataset!r}; expected ucf101, ffs, sky, taichi, folder or synthetic")


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
    missing = [name for name in needed if not (lists_dir / name).is_file()]
    if missing and (split != "all" or len(missing) < len(needed)):
        raise UserError(
            "wrong layout: expected " + ", ".join(f"ucfTrainTestlist/{n}" for n in missing) + f" in {source} "
            "(from UCF101TrainTestSplits); a folder of your own needs none of them with --split all (classes from "
            "the class folders' names)"
        )
    if missing:  # --split all on a UCF101-style folder of one's own: classes are the class folders, sorted
        classes = sorted({p.name for p in videos_dir.iterdir() if p.is_dir() and not p.name.startswith(".")},
                         key=str.lower)
        train, test = {}, {}
    else:
        classes = read_class_index(lists_dir / "classInd.txt")
        train = {_key(p): p for p in read_split_list(lists_dir / f"trainlist0{split_list}.txt")}
        test = {_key(p): p for p in read_split_list(lists_dir / f"testlist0{split_list}.txt")}
    label_of = {c.lower(): i for i, c in enumerate(classes)}

    tree = walk_tree(source)
    other = list(tree.other)
    read = {"classInd.txt": "read: the class names",
            f"trainlist0{split_list}.txt": f"read: split {split_list}'s train list",
            f"testlist0{split_list}.txt": f"read: split {split_list}'s test list"}
    on_disk: dict[str, str] = {}
    for f in tree.files:
        parts = f.split("/")
        if parts[0] == "UCF-101" and len(parts) == 3 and _suffix(f) in VIDEO_EXTS:
            key = _key(f)
            if key in on_disk:
                other.append((f, f"duplicate: the same video as {on_disk[key]} (indexed there)"))
            else:
                on_disk[key] = f
        elif parts[0] == "UCF-101":
            if _suffix(f) in VIDEO_EXTS:
                other.append((f, "not read: UCF101's videos are UCF-101/<Class>/<video>"))
            else:
                other.append(not_read(f))
        elif parts[0] == "ucfTrainTestlist" and len(parts) == 2 and parts[1] in read:
            other.append((f, read[parts[1]]))
        elif parts[0] == "ucfTrainTestlist":
            other.append((f, f"not read: not classInd.txt or a list of split {split_list} (--split-list)"))
        else:
            other.append((f, "not read: outside UCF-101/ and ucfTrainTestlist/"))

    wanted = {"train": train.keys(), "test": test.keys(), "all": on_disk.keys() | train.keys() | test.keys()}[split]
    entries = []
    for key in sorted(wanted):
        cls = key.split("/")[0]
        label = label_of.get(cls, -1)
        name = classes[label] if label >= 0 else cls
        row_split = "train" if key in train else "test" if key in test else "none"
        if key in on_disk:
            reason = "" if label >= 0 else f"class folder {cls!r} is not in classInd.txt"  # (lists given)
            entries.append(Entry(on_disk[key], "video", label, name, row_split, reason))
        else:
            listed = f"trainlist0{split_list}.txt" if key in train else f"testlist0{split_list}.txt"
            rel = f"UCF-101/{train.get(key) or test.get(key)}"
            entries.append(Entry(rel, "video", label, name, row_split, f"missing: listed in {listed}, no such file"))
    for key in sorted(on_disk.keys() - set(wanted)):  # --split train or test: the videos of the other one
        where = (f"testlist0{split_list}.txt" if key in test else f"trainlist0{split_list}.txt" if key in train
                 else f"neither list of split {split_list}")
        other.append((on_disk[key], f"not selected: in {where} (--split {split})"))
    return Layout(entries, classes, split_list, sorted(other))


# ----------------------------------------------------------------------------- ffs, taichi, sky


def split_from_path(rel: str, names: dict[str, str]) -> str:
    for part in rel.split("/")[:-1] if "/" in rel else []:
        if part.lower() in names:
            return names[part.lower()]
    return "none"


def _select_split(entries: list[Entry], split: str, source: Path, hint: str,
                  other: list[tuple[str, str]]) -> list[Entry]:
    """The entries of ``split``; the others are added to ``other`` (not selected)."""
    if split == "all":
        return entries
    chosen = [e for e in entries if e.split == split]
    if not chosen:
        raise UserError(
            f"no {split} videos in {source}: expected a {hint} folder for --split {split} (or use --split all)"
        )
    other += [(as_listed(e), f"not selected: in the {e.split} split (--split {split})")
              for e in entries if e.split != split]
    return chosen


def folder_layout(source: Path, split: str, dataset: str) -> Layout:
    tree = walk_tree(source)
    entries, other = index_files(tree.files)
    other += tree.other
    if not entries:
        exts = " ".join(VIDEO_EXTS + IMAGE_EXTS)
        raise UserError(f"empty dataset: no videos or frame folders ({exts}) under {source}")
    for e in entries:
        e.split = split_from_path(e.path, {"train": "train", "test": "test"})
    chosen = _select_split(entries, split, source, f"{split}/", other)
    return Layout(chosen, other=sorted(other))


def sky_layout(source: Path, split: str) -> Layout:
    folders = {"train": source / "sky_train", "test": source / "sky_test"}
    wanted = ["train", "test"] if split == "all" else [split]
    present = [s for s in wanted if folders[s].is_dir()]  # a link to a folder elsewhere counts
    if split != "all" and not present:
        raise UserError(f"wrong layout: expected folder sky_{split}/ in {source}")
    if not present:
        raise UserError(f"wrong layout: expected folders sky_train/ and sky_test/ in {source}")
    tree = walk_tree(source)
    found, other = index_files(tree.files)
    other += tree.other
    entries = []
    for e in found:
        top = e.path.split("/")[0]
        s = top.removeprefix("sky_")
        if top not in ("sky_train", "sky_test"):
            other.append((as_listed(e), "not read: outside sky_train/ and sky_test/"))
            continue
        if s not in present:
            other.append((as_listed(e), f"not selected: in {top}/ (--split {split})"))
            continue
        depth = len(e.path.split("/")) - 1  # sky_train/<video>/<clip> → 2
        if e.kind != "frames" or depth != 2:
            raise UserError(
                f"wrong layout: expected sky_{s}/<video>/<clip>/*.jpg (two levels of frame folders), found {e.path}"
            )
        e.split = s
        entries.append(e)
    if not entries:
        raise UserError(f"empty dataset: no frame folders under {', '.join(f'sky_{s}/' for s in present)} in {source}")
    return Layout(entries, other=sorted(other))
