"""Loading a sentence-transformers BERT folder: what is read, and a clear error for bad files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from kit.tinybert import DIM, random_weights, write_tiny_bert
from safetensors.torch import save_file

from server_ref.loading.bert_weights import (
    ModelFilesError,
    bert_state_dict,
    load_sentence_bert,
    read_bert_config,
)

CPU = torch.device("cpu")


@pytest.fixture
def folder(tiny_bert: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model to damage."""
    return Path(shutil.copytree(tiny_bert, tmp_path / "model"))


def test_reads_the_architecture_and_sentence_transformers_settings(tiny_bert: Path) -> None:
    model, sentence = load_sentence_bert(tiny_bert, CPU, torch.float32)

    assert model.cfg.dim == DIM and model.cfg.n_layers == 2 and model.cfg.gelu == "none"
    assert sentence.max_tokens == 16  # sentence_bert_config.json, not the 64 positions
    assert sentence.dimensions == DIM
    assert sentence.normalize is True
    assert sentence.matryoshka_dims == ()
    assert not any(p.requires_grad for p in model.parameters())


def test_fused_qkv_is_query_key_value_in_order(tiny_bert: Path) -> None:
    tensors = random_weights()
    sd = bert_state_dict(read_bert_config(tiny_bert), tensors)
    wqkv = sd["layers.1.attn.wqkv.weight"]

    assert wqkv.shape == (3 * DIM, DIM)
    torch.testing.assert_close(
        wqkv[DIM : 2 * DIM], tensors["encoder.layer.1.attention.self.key.weight"]
    )
    assert not any(name.startswith("pooler") for name in sd)


def test_a_bert_prefix_is_accepted(folder: Path) -> None:
    save_file(random_weights(prefix="bert."), str(folder / "model.safetensors"))

    assert load_sentence_bert(folder, CPU, torch.float32)[0].cfg.n_layers == 2


def test_without_normalize_module_and_with_matryoshka_dims(tmp_path: Path) -> None:
    folder = write_tiny_bert(
        tmp_path / "m", normalize=False, config_overrides={"matryoshka_dimensions": [16, 8]}
    )
    model, sentence = load_sentence_bert(folder, CPU, torch.float32)

    assert model.normalize is False and sentence.normalize is False
    assert sentence.matryoshka_dims == (8, 16)


def _remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        path = folder / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)

    return spoil


def _truncate_weights(folder: Path) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:5000])


def _drop_a_weight(folder: Path) -> None:
    tensors = random_weights()
    del tensors["encoder.layer.1.attention.self.value.weight"]
    save_file(tensors, str(folder / "model.safetensors"))


def _config(**changes: object) -> Callable[[Path], None]:
    def spoil(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(changes)
        (folder / "config.json").write_text(json.dumps(cfg))

    return spoil


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_remove("config.json"), "config.json is missing"),
        (_remove("model.safetensors"), "model.safetensors is missing"),
        (_write("model.safetensors", b"\x00" * 64), "model.safetensors cannot be read"),
        (_truncate_weights, "model.safetensors cannot be read"),
        (_drop_a_weight, "lacks weights for: layers.1.attn.wqkv.weight"),
        (_write("config.json", "{not json"), "config.json is not valid JSON"),
        (_write("config.json", "[1, 2]"), "config.json should hold a JSON dict"),
        (_config(hidden_size=48), "has shape"),
        (_config(num_hidden_layers=3), "lacks weights for: layers.2"),
        (_config(hidden_act="relu"), "hidden_act 'relu' is not supported"),
        (_config(model_type="roberta"), "only BERT"),
        (_config(position_embedding_type="relative_key"), "only BERT"),
        (_config(num_attention_heads=5), "not a multiple of heads"),
        (_config(vocab_size=None), "missing or invalid field"),
        (_write("sentence_bert_config.json", '{"max_seq_length": 100}'), "outside 1..64"),
        (
            _write("1_Pooling/config.json", '{"pooling_mode_cls_token": true}'),
            "only mean pooling is supported, got ['cls_token']",
        ),
        (_write("modules.json", '{"a": 1}'), "modules.json should hold a JSON list"),
    ],
)
def test_bad_files_are_one_clear_error(
    folder: Path, spoil: Callable[[Path], None], message: str
) -> None:
    spoil(folder)

    with pytest.raises(ModelFilesError) as info:
        load_sentence_bert(folder, CPU, torch.float32)
    assert message in str(info.value)


def test_a_plain_transformers_folder_gets_mean_pooling_normalised(folder: Path) -> None:
    for name in ("sentence_bert_config.json", "modules.json", "1_Pooling/config.json"):
        (folder / name).unlink()
    model, sentence = load_sentence_bert(folder, CPU, torch.float32)

    assert sentence.max_tokens == 64  # the model's positions
    assert sentence.normalize is True and model.normalize is True
