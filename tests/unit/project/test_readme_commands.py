"""The README's two commands are the project's promise; CI must run the same test command."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
TORCH_FIRST = "python -m pip install torch==2.13.0 && "


def _quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _test_command() -> str:
    (command,) = [c for c in _quick_start_commands() if "pytest" in c]
    return command


def test_quick_start_has_the_two_commands_torch_pinned_first() -> None:
    commands = _quick_start_commands()

    assert len(commands) == 2
    assert "pytest" in commands[1]
    for command in commands:
        assert command.startswith(TORCH_FIRST)  # an unpinned torch pulls a multi-GB CUDA build


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    test_command = _test_command()

    (line,) = [line for line in ci.splitlines() if test_command in line]
    # Nothing may soften the status, e.g. `|| true` would hide pytest's 5 (no tests collected).
    assert line.strip() in (test_command, f"{test_command} || exit $?")


def test_ci_script_is_strict_and_executable() -> None:
    path = REPO / ".ci" / "run"
    lines = path.read_text().splitlines()

    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert os.access(path, os.X_OK)
