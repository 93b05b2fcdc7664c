"""The paper's recorded numbers: the committed files load, and a malformed file is refused with file and line."""

from __future__ import annotations

import math

import pytest

from harness.baselines import cell_text, load_all, load_baseline, paper_gflops_table
from harness.errors import UserError

HEADER = "method,faceforensics,skytimelapse,ucf101,taichi_hd,source,checked\n"


def test_committed_baselines_hold_the_papers_numbers():
    tables = load_all()
    fvd = tables["fvd_sota"].set_index("method")
    assert list(fvd.index) == [
        "MoCoGAN", "VideoGPT", "MoCoGAN-HD", "DIGAN", "StyleGAN-V", "PVDM", "MoStGAN-V", "LVDM", "Latte", "Matten",
    ]
    assert fvd.loc["Matten", "ucf101"] == 210.61
    assert fvd.loc["Latte", "faceforensics"] == 34.00
    assert fvd.loc["DIGAN", "skytimelapse"] == 83.11
    assert math.isnan(fvd.loc["LVDM", "faceforensics"]) and math.isnan(fvd.loc["MoCoGAN", "taichi_hd"])
    assert all(s.strip() for s in tables["fvd_sota"]["source"])
    gflops = tables["gflops"].set_index("method")["gflops"].to_dict()
    assert gflops == {"Matten": 4008, "Latte": 5572, "LVDM": 5718}
    sizes = tables["model_sizes"]
    by = {(m, s): p for m, s, p in zip(sizes["model"], sizes["size"], sizes["params_m"], strict=True)}
    assert {s: by["Matten", s] for s in ("S", "B", "L", "XL")} == {"S": 35, "B": 164, "L": 579, "XL": 853}
    # Latte's counts from its public code (they lived in models/registry.py before)
    assert {s: by["Latte", s] for s in ("S", "B", "L", "XL")} == {
        "S": 32.480672, "B": 129.54704, "L": 456.815648, "XL": 673.681568}


def test_paper_params_by_model():
    from harness.baselines import paper_params, with_paper_params

    assert paper_params("matten", "s", 3) == (35_000_000, paper_params("matten", "s", 3)[1])
    assert paper_params("latte", "xl", None)[0] == 673_681_568 and "Latte public code" in paper_params(
        "latte", "xl", None)[1]
    assert paper_params("matten", "s", 2) == (None, None) and paper_params("matten", "tiny", 3) == (None, None)
    row = with_paper_params([{"family": "matten", "size": "s", "variant": 3, "params": 42_000_000}])[0]
    assert row["paper_params"] == 35_000_000 and row["deviation"] == (42_000_000 - 35_000_000) / 35_000_000


def test_paper_gflops_come_from_the_csv_by_model():
    """No paper number lives in a .py file: the FLOP table's paper column is baselines/gflops.csv's."""
    import pandas as pd

    from harness.flops import paper_gflops

    assert paper_gflops_table() == {"matten-xl-v3-madan": 4008.0, "latte-xl": 5572.0}  # LVDM is not one of ours
    assert paper_gflops("matten-xl") == 4008.0 and paper_gflops("latte-xl") == 5572.0
    assert paper_gflops("matten-xl-v2") is None and paper_gflops("matten-s") is None
    with pytest.raises(UserError, match="Sora map to no model"):
        paper_gflops_table(pd.DataFrame({"method": ["Matten", "Sora"], "gflops": [1.0, 2.0]}))


def test_cells_keep_the_papers_digits():
    fvd = load_all()["fvd_sota"]
    i = list(fvd["method"]).index("MoStGAN-V")
    assert cell_text(fvd, i, "faceforensics") == "39.70"
    assert cell_text(fvd, i, "ucf101") == "–"


def write(tmp_path, body: str, name: str = "fvd_sota.csv"):
    path = tmp_path / name
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "body, where, what",
    [
        (HEADER + "A,1,2,3,4,src,no\nB,1,x,3,4,src,no\n", ":3:", "skytimelapse='x' is not a number"),
        (HEADER + "A,1,2,3,4,,no\n", ":2:", "empty 'source'"),
        (HEADER + "A,1,2,3,src,no\n", ":2:", "6 fields, expected 7"),
        (HEADER + "A,1,-5,3,4,src,no\n", ":2:", "must be a finite number >= 0"),
        ("method,ffs,skytimelapse,ucf101,taichi_hd,source,checked\nA,1,2,3,4,s,n\n", ":1:", "missing columns"),
        ("", ":1:", "empty file"),
    ],
)
def test_malformed_file_is_refused_with_file_and_line(tmp_path, body, where, what):
    path = write(tmp_path, body)
    with pytest.raises(UserError) as e:
        load_baseline(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}{where}"), msg
    assert what in msg


def test_dash_means_missing_and_blank_lines_are_skipped(tmp_path):
    df = load_baseline(write(tmp_path, HEADER + "A,1,–,-,4,src,no\n\n"))
    assert len(df) == 1 and math.isnan(df.loc[0, "skytimelapse"]) and math.isnan(df.loc[0, "ucf101"])


def test_unknown_table_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="unknown baseline table"):
        load_baseline(write(tmp_path, HEADER, name="other.csv"))
    with pytest.raises(UserError, match="not found"):
        load_baseline(tmp_path / "fvd_sota.csv")
