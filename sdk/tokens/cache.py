"""Rank files on disk, named by their sha256 and checked against it on every load.

Layout: ``<cache root>/tokenizers/<sha256>.tiktoken`` where the root is
``$LLM_SDK_CACHE_DIR``, else the platform's user cache directory for ``llm-sdk`` (the same
root as the server's model cache). A file whose bytes no longer hash to its name (a torn
write, a disk error, an edit) is deleted and reported as missing, so the caller fetches it
again. Writes go to a temporary file first and are renamed into place, so concurrent
clients never read a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from sdk.tokens.export import sha256_hex

__all__ = ["CACHE_ENV", "RankCache", "default_cache_root"]

CACHE_ENV = "LLM_SDK_CACHE_DIR"


def default_cache_root() -> Path:
    """``$LLM_SDK_CACHE_DIR``, else the user cache directory (platformdirs when installed)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().absolute()
    try:
        import platformdirs
    except ImportError:  # the SDK alone does not depend on platformdirs
        if sys.platform == "win32":
            base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
            return (base / "llm-sdk" / "Cache").absolute()
        if sys.platform == "darwin":
            return (Path.home() / "Library" / "Caches" / "llm-sdk").absolute()
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return (base / "llm-sdk").absolute()
    return Path(platformdirs.user_cache_dir("llm-sdk")).absolute()


class RankCache:
    """Rank files keyed by sha256.

    >>> cache = RankCache()  # doctest: +SKIP
    >>> cache.store(sha, data); cache.load(sha) == data  # doctest: +SKIP
    True
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._directory = Path(directory) if directory is not None else None

    @property
    def directory(self) -> Path:
        # Resolved on use, so LLM_SDK_CACHE_DIR set after the client was made still counts.
        return self._directory or default_cache_root() / "tokenizers"

    def path(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.tiktoken"

    def load(self, sha256: str) -> bytes | None:
        """The cached bytes, or ``None`` when missing, unreadable or corrupt (then deleted)."""
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if sha256_hex(data) != sha256:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return data

    def store(self, sha256: str, data: bytes) -> bool:
        """Write ``data`` under ``sha256``; ``False`` (and nothing raised) when the disk refuses:
        the cache is an optimisation, never a reason for a call to fail."""
        if sha256_hex(data) != sha256:
            raise ValueError("refusing to cache bytes under a sha256 they do not have")
        directory = self.directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ranks-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path(sha256))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            return False
        return True
