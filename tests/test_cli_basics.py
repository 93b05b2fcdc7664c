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


def test_user_error_naming_a_path_with_brackets_prints_it_verbatim():
    """A path like ``clips[/b]`` is no rich markup: it used to end in a MarkupError traceback (or lose ``[red]``)."""
    code = (
        "import sys; from harness.cli import main; from harness.cli.app import app\n"
        "from harness.errors import UserError\n"
        "@app.command('boom')\n"
        "def boom():\n"
        "    raise UserError('samples not found: /data/a[/b]/x[red]y')\n"
        "sys.argv = ['matten-bench', 'boom']; main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == ["error: samples not found: /data/a[/b]/x[red]y"]


def test_device_rule_is_shared_and_refuses_a_missing_gpu(monkeypatch):
    import pytest
    import torch

    from harness.errors import UserError
    from harness.machine import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = torch.device("cpu")
    assert resolve_device("auto") == cpu and resolve_device(None) == cpu and resolve_device("cpu") == cpu
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match=f"--device {spec} but torch sees no GPU"):
            resolve_device(spec)
    with pytest.raises(UserError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    # a machine with two GPUs (faked): cuda:N is honoured, plain cuda is LOCAL_RANK's GPU, past the count is refused
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0) and resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1) and resolve_device("auto") == torch.device("cuda", 1)
    assert chosen == [0, 1, 1, 1]  # the chosen GPU becomes the current one
    with pytest.raises(UserError, match="GPU 2 asked for, torch sees 2"):
        resolve_device("cuda:2")
    with pytest.raises(UserError, match="cuda:N with N a GPU index"):
        resolve_device("cuda:x")


def test_a_path_with_markup_characters_is_printed_literally(tmp_path):
    """rich would read "[bold]" in a user's path as markup and drop it; errors print paths as they are."""
    missing = tmp_path / "a[bold]b" / "x.pt"
    out = subprocess.run([sys.executable, "-m", "harness.cli", "sample", "--checkpoint", str(missing), "--out",
                          str(tmp_path / "o"), "--device", "cpu"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == f"error: checkpoint not found: {missing}"


def test_usage_errors_are_one_line_naming_the_help_and_exit_2(tmp_path):
    """A misspelt option or a bad value is one line (not click's framed box) that says where the options are."""
    cases = [
        (["train", "--stepz", "3"], "No such option: --stepz", "(matten-bench train --help)"),
        (["sample", "--num", "many"], "Invalid value for '--num'", "(matten-bench sample --help)"),
        (["nosuchcommand"], "No such command 'nosuchcommand'", "(matten-bench --help)"),
    ]
    for args, says, where in cases:
        out = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert lines[0].startswith("error: ") and says in lines[0] and lines[0].endswith(where), lines[0]
    # no arguments at all: the help, exit 0
    out = subprocess.run([sys.executable, "-m", "harness.cli"], capture_output=True, text=True)
    assert out.returncode == 0 and "prepare" in out.stdout and "train" in out.stdout
