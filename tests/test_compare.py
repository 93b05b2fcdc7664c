"""`matten-bench compare`: every number under the records' outputs, matched by file and key."""

import json
import subprocess
import sys

from harness.compare import compare_reports


def _report(root, fvd, params=41.5, seconds=3.0):
    (root / "records" / "exp").mkdir(parents=True)
    rec = {"outputs": {"fvd": fvd, "result": {"interval": {"low": fvd - 1, "high": fvd + 2}, "clips": {"real": 8},
                                              "environment": {"torch_threads": 2}}}, "seconds": seconds}
    (root / "records" / "exp" / "fvd-0000010.json").write_text(json.dumps(rec))
    (root / "records" / "params.json").write_text(json.dumps({"outputs": {"models": [{"params": params}]}}))
    return root


def test_identical_numbers_and_what_differs(tmp_path):
    a = _report(tmp_path / "a", 100.0)
    b = _report(tmp_path / "b", 100.0, seconds=9.0)  # a time is not a number of the measurement
    assert compare_reports(a, b) == (5, 5, [])  # fvd, low, high, clips.real, params
    c = _report(tmp_path / "c", 101.0)
    same, total, diffs = compare_reports(a, c)
    assert (same, total) == (2, 5)
    assert diffs[0] == "exp/fvd-0000010.json:outputs.fvd: 100.0 -> 101.0 (+1.00e-02 relative)"
    out = subprocess.run([sys.executable, "-m", "harness.cli", "compare", str(a), str(c)], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "reproduced: 2 of 5 numbers identical" in out.stderr.replace("\n", " ")
    strict = subprocess.run([sys.executable, "-m", "harness.cli", "compare", str(a), str(c), "--strict"],
                            capture_output=True, text=True)
    assert strict.returncode == 1
    missing = subprocess.run([sys.executable, "-m", "harness.cli", "compare", str(a), str(tmp_path / "none")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


def test_reports_measured_with_other_detector_files_say_so(tmp_path):
    """A new user's case: the committed smoke records name detector sha256 986be85b..., a fresh `i3d fetch` made
    e6c74aef...; compare counted identical numbers and said nothing of it."""
    a, b = _report(tmp_path / "a", 100.0), _report(tmp_path / "b", 100.0)
    for root, sha in ((a, "a" * 64), (b, "b" * 64)):
        path = root / "records" / "exp" / "fvd-0000010.json"
        rec = json.loads(path.read_text())
        rec["outputs"]["result"]["detector"] = {"kind": "i3d-kinetics-400", "sha256": sha}
        path.write_text(json.dumps(rec))
    out = subprocess.run([sys.executable, "-m", "harness.cli", "compare", str(a), str(b)], capture_output=True,
                         text=True)
    said = " ".join(out.stderr.split())
    assert out.returncode == 0 and "reproduced: 5 of 5 numbers identical" in said
    assert f"note: the detector files differ (sha256 {'a' * 12} -> {'b' * 12})" in said
    same = subprocess.run([sys.executable, "-m", "harness.cli", "compare", str(a), str(a)], capture_output=True,
                          text=True)
    assert "detector files differ" not in same.stderr
