"""The CLI's shared behaviour: help, doctor, and bad input as one line with exit code 2."""

import subprocess
import sys

from typer.testing import CliRunner

from harness.cli import app
from harness.cli.doctor import run_checks

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "doctor" in result.output


def test_doctor_reports_every_check_with_a_fix():
    checks = run_checks()
    names = [c.name for c in checks]
    for expected in ("torch", "selective scan", "decord", "av", "I3D weights", "SD v1-4 VAE"):
        assert expected in names
    for c in checks:
        assert c.ok or c.fix not in ("", "-"), f"{c.name} is missing but names no fix"
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0


def test_user_error_is_one_line_and_exit_2(tmp_path):
    code = (
        "import sys; from harness.cli import main; from harness.cli.app import app\n"
        "from harness.errors import UserError\n"
        "@app.command('boom')\n"
        "def boom():\n"
        "    raise UserError('source folder /nope does not exist')\n"
        "sys.argv = ['matten-bench', 'boom']; main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["error: source folder /nope does not exist"]
    assert "Traceback" not in proc.stderr


def test_device_rule_is_shared_and_refuses_a_missing_gpu(monkeypatch):
    import pytest
    import torch

    from harness.device import resolve_device
    from harness.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu" and resolve_device("cpu") == "cpu"
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match=f"--device {spec} but torch sees no GPU"):
            resolve_device(spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
