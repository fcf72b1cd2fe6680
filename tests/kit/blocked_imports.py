"""Run Python code in a fresh interpreter in which some top-level packages cannot be imported,
as on a machine where they are not installed (an optional extra left out).

    proc = run_without(["opentelemetry"], "import server_ref.api")

``after=["fastapi"]`` imports those first and lets through what they loaded of the blocked
packages (FastAPI >= 0.13x imports opentelemetry-api itself): only new imports fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_BLOCKER = """\
import importlib.abc, sys
{imports}
class _Blocked(importlib.abc.MetaPathFinder):
    before = {{m for m in sys.modules if m.split(".")[0] in {blocked!r}}}
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r} and name not in self.before:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def run_without(
    packages: Sequence[str], code: str, *, after: Sequence[str] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (cwd: the repository) with ``packages`` unimportable; stdout, stderr and
    the exit status come back in the ``CompletedProcess``."""
    imports = "\n".join(f"import {name}" for name in after)
    prelude = _BLOCKER.format(blocked=set(packages), imports=imports)
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=path),
        timeout=timeout,
        check=False,
    )
