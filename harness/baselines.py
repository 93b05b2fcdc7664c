"""The paper's recorded numbers (``baselines/*.csv``), loaded and checked.

Each file has a fixed set of columns; every row names its ``source`` (paper and table or
figure) and says what was ``checked`` against the paper. Numbers the paper does not give
are written "–" (an en dash; "-" is accepted too) and load as NaN.

The loader reads with the ``csv`` module rather than ``pandas.read_csv`` because a
malformed file must be refused with its file name and line number, which pandas does not
report for a bad value; the checked rows are then handed to pandas.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from harness.errors import UserError

BASELINES_DIR = Path(__file__).resolve().parent.parent / "baselines"
MISSING = {"–", "-", "—"}

# file stem -> (text columns, numeric columns); "source" and "checked" are required in every file.
SCHEMAS: dict[str, tuple[list[str], list[str]]] = {
    "fvd_sota": (["method"], ["faceforensics", "skytimelapse", "ucf101", "taichi_hd"]),
    "gflops": (["method", "unit"], ["gflops"]),
    "model_sizes": (["model", "size"], ["params_m"]),
}
DATASETS = {
    "faceforensics": "FaceForensics",
    "skytimelapse": "SkyTimelapse",
    "ucf101": "UCF101",
    "taichi_hd": "Taichi-HD",
}


def load_baseline(path: str | Path, schema: str | None = None) -> pd.DataFrame:
    """Read one baseline CSV, checking columns, numbers and sources; "–" cells become NaN.

    Raises UserError naming the file and line of the first problem.
    """
    path = Path(path)
    name = schema or path.stem
    if name not in SCHEMAS:
        raise UserError(f"{path}: unknown baseline table {name!r} (known: {', '.join(sorted(SCHEMAS))})")
    text_cols, num_cols = SCHEMAS[name]
    expected = [*text_cols, *num_cols, "source", "checked"]
    if not path.exists():
        raise UserError(f"baseline file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise UserError(f"{path}:1: empty file (expected a header: {','.join(expected)})") from None
        except csv.Error as e:
            raise UserError(f"{path}:1: unreadable CSV ({e})") from e
        if sorted(header) != sorted(expected):
            missing = [c for c in expected if c not in header]
            extra = [c for c in header if c not in expected]
            raise UserError(f"{path}:1: header has missing columns {missing} / unexpected columns {extra}")
        rows = []
        try:
            for fields in reader:
                line = reader.line_num
                if not fields or all(not x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    raise UserError(f"{path}:{line}: {len(fields)} fields, expected {len(header)} ({','.join(header)})")
                row = dict(zip(header, (x.strip() for x in fields), strict=True))
                rows.append(_check_row(path, line, row, text_cols, num_cols))
        except csv.Error as e:
            raise UserError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from e
    if not rows:
        raise UserError(f"{path}: no rows")
    df = pd.DataFrame([r for r, _ in rows], columns=expected)
    df.attrs["text"] = [t for _, t in rows]  # the cells as written ("39.70", "–"), for tables
    return df


def _check_row(path: Path, line: int, row: dict, text_cols: list[str], num_cols: list[str]) -> tuple[dict, dict]:
    for col in [*text_cols, "source", "checked"]:
        if not row[col]:
            raise UserError(f"{path}:{line}: empty {col!r} (every row names its {col})")
    out: dict = dict(row)
    for col in num_cols:
        cell = row[col]
        if cell in MISSING:
            out[col] = math.nan
            continue
        try:
            value = float(cell)
        except ValueError:
            msg = f"{col}={cell!r} is not a number (write – where the paper has none)"
            raise UserError(f"{path}:{line}: {msg}") from None
        if not math.isfinite(value) or value < 0:
            raise UserError(f"{path}:{line}: {col}={cell!r} must be a finite number >= 0")
        out[col] = value
    return out, row


def load_all(folder: str | Path = BASELINES_DIR) -> dict[str, pd.DataFrame]:
    """Every known baseline table in ``folder``: {"fvd_sota": ..., "gflops": ..., "model_sizes": ...}."""
    folder = Path(folder)
    return {name: load_baseline(folder / f"{name}.csv") for name in SCHEMAS}


def cell_text(df: pd.DataFrame, index: int, col: str) -> str:
    """A baseline cell as the paper prints it ("39.70", not 39.7), "–" where missing."""
    text = df.attrs.get("text")
    if text is not None and index < len(text):
        value = text[index][col]
        return "–" if value in MISSING else value
    value = df.iloc[index][col]
    return "–" if isinstance(value, float) and math.isnan(value) else str(value)


# The paper's Table prints GFLOPs for its XL/2 models (our public names) and for LVDM (not one of ours).
GFLOPS_MODELS = {"Matten": "matten-xl", "Latte": "latte-xl", "LVDM": None}


def paper_gflops_table(table: pd.DataFrame | None = None) -> dict[str, float]:
    """The paper's printed GFLOPs of our models by their registry key (``matten-xl-v3-madan``, ``latte-xl``), from
    ``baselines/gflops.csv`` (its unit column says what each number counts). Raises UserError for a method the
    file has and this table does not place."""
    from models.registry import ModelSpec

    table = load_baseline(BASELINES_DIR / "gflops.csv") if table is None else table
    unknown = sorted(set(table["method"]) - set(GFLOPS_MODELS))
    if unknown:
        raise UserError(f"baselines/gflops.csv: method(s) {', '.join(unknown)} map to no model "
                        f"(known: {', '.join(GFLOPS_MODELS)})")
    return {ModelSpec.parse(GFLOPS_MODELS[m]).key: float(g)
            for m, g in zip(table["method"], table["gflops"], strict=True) if GFLOPS_MODELS[m] and g == g}


def paper_params(
    family: str, size: str, variant: int | None, sizes: pd.DataFrame | None = None
) -> tuple[int | None, str | None]:
    """The published parameter count of one model from ``baselines/model_sizes.csv`` and its source: Matten
    variant 3 (the paper's table) and Latte (its public code); (None, None) for anything else."""
    if not (family == "latte" or (family == "matten" and variant == 3)):
        return None, None
    sizes = load_baseline(BASELINES_DIR / "model_sizes.csv") if sizes is None else sizes
    hit = sizes[(sizes["model"].str.lower() == family) & (sizes["size"].str.lower() == size.lower())]
    if hit.empty:
        return None, None
    return round(float(hit.iloc[0]["params_m"]) * 1e6), str(hit.iloc[0]["source"])


def with_paper_params(rows: list[dict]) -> list[dict]:
    """``models.list_models`` rows with ``paper_params``, ``deviation`` (ours / paper − 1) and ``paper_source``."""
    sizes = load_baseline(BASELINES_DIR / "model_sizes.csv")
    out = []
    for r in rows:
        paper, source = paper_params(r["family"], r["size"], r.get("variant"), sizes)
        deviation = None if paper is None else (r["params"] - paper) / paper
        out.append({**r, "paper_params": paper, "deviation": deviation, "paper_source": source})
    return out

