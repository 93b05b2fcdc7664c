"""Benchmark records (harness.bench.record): one JSON per `bench` run, and results/benchmarks.md made from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench.record import NO_TARGET, read_records, render, rows_table, write_record
from harness.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_a_record_holds_command_machine_date_options_rows_and_verdict(tmp_path):
    rows = [{"model": "Latte-S", "ms": 35.25, "ok": True, "runs": [1, 2]}, {"model": "Matten-S", "ms": 105.4}]
    path = write_record("train", "cpu", {"batch": 32}, rows, verdict="target met", record_dir=tmp_path,
                        command="matten-bench bench train --batch 32", details={"loop_target": 0.85})
    rec = json.loads(path.read_text())
    assert path.name.endswith("-train-cpu.json")
    assert rec["benchmark"] == "train" and rec["command"] == "matten-bench bench train --batch 32"
    assert rec["options"] == {"batch": 32} and rec["rows"] == rows and rec["verdict"] == "target met"
    assert rec["machine"]["device"] == "cpu" and rec["date"].endswith("Z") and rec["details"]["loop_target"] == 0.85
    # the table: scalar fields only, in first-seen order; a missing cell is a dash
    assert rows_table(rows).splitlines() == ["| model | ms | ok |", "| --- | --- | --- |",
                                             "| Latte-S | 35.25 | True |", "| Matten-S | 105.4 | – |"]


def test_the_report_lists_records_by_benchmark_newest_first_then_the_history(tmp_path):
    records = [
        {"benchmark": "fvd", "command": "matten-bench bench fvd", "date": "2026-11-24T10:00:00Z",
         "machine": {"device": "cpu", "cpu": "x86_64", "usable_cpus": 2, "torch": "2.13"}, "rows": [{"clips/s": 1.5}],
         "verdict": NO_TARGET, "path": tmp_path / "bench" / "a.json"},
        {"benchmark": "train", "command": "matten-bench bench train", "date": "2026-11-30T06:00:00Z",
         "machine": {"device": "cuda", "gpu": "NVIDIA H200", "gpu_count": 1, "torch": "2.11", "cuda": "13.0"},
         "rows": [{"model": "Latte-S", "loop / pure": 1.017}], "verdict": "met", "path": tmp_path / "bench" / "b.json"},
        {"benchmark": "train", "command": "matten-bench bench train --no-loop", "date": "2026-11-30T07:00:00Z",
         "machine": {"device": "cpu"}, "rows": [], "verdict": NO_TARGET, "path": tmp_path / "bench" / "c.json"},
    ]
    text = render(sorted(records, key=lambda r: r["date"], reverse=True), "# Benchmarks\n\n## Old runs\nby hand\n",
                  tmp_path)
    assert text.index("## `bench fvd`") < text.index("## `bench train`") < text.index("# History (hand-written")
    assert text.index("--no-loop") < text.index("NVIDIA H200 (x1), torch 2.11, CUDA 13.0")  # newest first
    assert "Record: [bench/b.json](bench/b.json)" in text and "| Latte-S | 1.017 |" in text
    assert text.rstrip().endswith("## Old runs\nby hand") and text.count("# Benchmarks") == 1


def test_bench_scan_writes_a_record_and_bench_report_makes_the_markdown(tmp_path):
    cmd = [sys.executable, "-m", "harness.cli", "bench"]
    out = subprocess.run(cmd + ["scan", "--compare", "4", "--torch-only", "8", "--repeats", "1", "--reference-repeats",
                                "1", "--record-dir", str(tmp_path / "bench")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    (rec,) = read_records(tmp_path / "bench")
    assert rec["benchmark"] == "scan" and rec["command"].startswith("matten-bench bench scan --compare 4")
    assert [(r["L"], r["backend"], r["pass"]) for r in rec["rows"]] == [
        (4, "reference", "fwd+bwd"), (4, "torch", "fwd+bwd"), (8, "torch", "fwd"), (8, "torch", "fwd+bwd")]
    (tmp_path / "history.md").write_text("# Benchmarks\n\nthe old account\n")
    out = subprocess.run(cmd + ["report", "--record-dir", str(tmp_path / "bench"), "--out", str(tmp_path / "b.md"),
                                "--history", str(tmp_path / "history.md")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "b.md").read_text()
    assert "## `bench scan`" in text and rec["command"] in text and text.rstrip().endswith("the old account")
    (tmp_path / "bench" / "junk.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="junk.json: not a benchmark record"):
        read_records(tmp_path / "bench")


def test_the_mixer_verdict_against_the_scan_issues_target():
    from harness.bench.models import mixer_verdict

    def row(name, ms):
        return {"module": name, "fwd+bwd ms (median)": ms}

    eager = [row("Latte attention pair (S-attn + T-attn)", 10.0), row("BiMamba, fused: 1 scan call", 12.1)]
    assert mixer_verdict(eager).endswith("(eager): 1.21x, missed")
    compiled = eager + [row("Latte attention pair, torch.compile", 8.0), row("BiMamba, fused, torch.compile", 7.6)]
    assert mixer_verdict(compiled).endswith("(compiled): 0.95x, met")  # the compiled pair is what the target names
    assert mixer_verdict([row("2 × mamba_ssm.Mamba: not run (ImportError)", "-")]).startswith("no target")
