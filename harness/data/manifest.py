"""The manifest of a prepared dataset: one row per video, written as Parquet.

``<prepared>/manifest.parquet`` columns, in order (rows sorted by ``path``):

==============  ========  =====================================================================
path            str       relative to the source root (``dataset.json`` names the root)
kind            str       "video" (a file decord reads) or "frames" (a folder of images)
frames          int64     frames decord can index / images in the folder (0 when unreadable)
fps             float64   from the container header; NaN for frame folders
width, height   int64     pixels of the frames the loader reads (after ``rotation``)
rotation        int64     clockwise degrees the file asks for (0, 90, 180, 270); decord applies it
label           int64     0-based class (UCF101: classInd.txt number - 1); -1 when unlabeled
class_name      str       "" when unlabeled
split           str       "train" | "test" | "none" (the source says nothing)
size, mtime_ns  int64     file size and modification time (folders: total bytes, newest mtime)
fingerprint     str       ``"<size>-<mtime_ns>"`` (folders: ``"<images>-<bytes>-<newest mtime_ns>"``)
sha256          str       content hash when ``--sha256`` was given, else ""
probe_error     str       what the probe found wrong ("" when readable)
check           str       the probe that filled the row: "quick" | "full" (``harness.data.probe``); "" if none
status          str       "ok" | "skipped"
reason          str       why it was skipped ("" when ok)
==============  ========  =====================================================================

``dataset.json`` beside it holds the dataset name, the absolute source root, the split used, the
clip length the "too short" rule assumed, the check that ran (``check``, ``check_text``), class names,
counts, and ``other_files``: every other file under the source (``{"path", "reason"}``: not a video,
another split, hidden, a link not followed, the split lists that were read), so that each file is either
a row here or listed there.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UserError
from harness.io import atomic_write_bytes, atomic_write_json, read_json_object

COLUMNS = {
    "path": "object",
    "kind": "object",
    "frames": "int64",
    "fps": "float64",
    "width": "int64",
    "height": "int64",
    "label": "int64",
    "class_name": "object",
    "split": "object",
    "size": "int64",
    "mtime_ns": "int64",
    "fingerprint": "object",
    "sha256": "object",
    "probe_error": "object",
    "check": "object",
    "rotation": "int64",
    "status": "object",
    "reason": "object",
}
MANIFEST = "manifest.parquet"
DATASET_JSON = "dataset.json"


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows → the manifest's DataFrame: fixed columns and dtypes, sorted by path, fresh index."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df = df.astype(COLUMNS).sort_values("path", kind="stable").reset_index(drop=True)
    return df


def write_manifest(prepared_dir: str | Path, df: pd.DataFrame, info: dict[str, Any]) -> None:
    """Write ``manifest.parquet`` then ``dataset.json``, each atomically."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(Path(prepared_dir) / MANIFEST, buf.getvalue())
    atomic_write_json(Path(prepared_dir) / DATASET_JSON, info)


def load_manifest(prepared_dir: str | Path, ok_only: bool = False) -> pd.DataFrame:
    """The manifest of a prepared folder (only rows with status "ok" when ``ok_only``)."""
    path = Path(prepared_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"no {MANIFEST} in {prepared_dir}: run `matten-bench prepare` first")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow's ArrowInvalid and OSError family: a damaged or partial file
        raise UserError(f"{path} cannot be read ({type(e).__name__}); run `matten-bench prepare` on it again") from e
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path} was written by an older matten-bench (no {', '.join(missing)} column): "
                        "run `matten-bench prepare` on it again")
    df = df[list(COLUMNS)].astype(COLUMNS)  # the same dtypes as written, whatever pandas reads strings as
    if ok_only:
        df = df[df["status"] == "ok"].reset_index(drop=True)
    return df


def load_info(prepared_dir: str | Path) -> dict[str, Any]:
    """``dataset.json`` of a prepared folder."""
    path = Path(prepared_dir) / DATASET_JSON
    if not path.is_file():
        raise UserError(f"no {DATASET_JSON} in {prepared_dir}: run `matten-bench prepare` first")
    return read_json_object(path, "run `matten-bench prepare` on it again")


def manifest_fingerprint(prepared_dir: str | Path) -> str:
    """A short hash of what a clip reader would see: the usable rows' paths, lengths, labels and file fingerprints.

    Two prepared folders with the same value read the same videos (FVD caches its real statistics under it).
    """
    df = load_manifest(prepared_dir, ok_only=True)
    info = load_info(prepared_dir)
    h = hashlib.sha256()
    h.update(f"{info.get('dataset')}|{info.get('split')}|{info.get('split_list')}\n".encode())
    for row in df[["path", "frames", "label", "fingerprint"]].itertuples(index=False):
        h.update(f"{row.path}|{row.frames}|{row.label}|{row.fingerprint}\n".encode())
    return h.hexdigest()[:16]
