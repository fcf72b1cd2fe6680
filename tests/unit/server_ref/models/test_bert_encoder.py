"""The BERT sentence encoder on a tiny random model: shapes, padding, and transformers' result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from kit.tinybert import DIM, POSITIONS, random_weights

from server_ref.loading.bert_weights import load_sentence_bert
from server_ref.loading.hf_tokenizer import HFTokenizer
from server_ref.models.bert import Packing, SentenceBert

CPU = torch.device("cpu")
TEXTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "a",
    "def f(x): return x * 2",
    "日本語 text",
]


@pytest.fixture(scope="module")
def model(tiny_bert: Path) -> SentenceBert:
    return load_sentence_bert(tiny_bert, CPU, torch.float32)[0]


@pytest.fixture(scope="module")
def ids(tiny_bert: Path) -> list[list[int]]:
    tok = HFTokenizer.from_file(tiny_bert / "tokenizer.json", max_tokens=16)
    return [enc.ids for enc in tok.encode_batch(TEXTS)]


def test_embeddings_are_unit_vectors_of_the_model_width(
    model: SentenceBert, ids: list[list[int]]
) -> None:
    out = model.embed(ids)

    assert out.shape == (len(TEXTS), DIM)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(TEXTS)))
    assert not torch.allclose(out[0], out[1])  # different texts, different vectors


def test_a_text_alone_equals_the_same_text_in_a_padded_batch(
    model: SentenceBert, ids: list[list[int]]
) -> None:
    batched = model.embed(ids)  # lengths differ: every short one is padded
    for i, seq in enumerate(ids):
        alone = model.embed([seq])
        torch.testing.assert_close(alone[0], batched[i], atol=1e-6, rtol=0)
    reordered = model.embed(ids[::-1])
    torch.testing.assert_close(reordered.flip(0), batched, atol=1e-6, rtol=0)


def test_packed_path_equals_a_dense_batch_of_equal_lengths(model: SentenceBert) -> None:
    seqs = [[2, 10, 11, 3], [2, 12, 13, 3], [2, 14, 15, 3]]  # nothing padded: no packing

    assert Packing.of(torch.ones(3, 4)).rows is None
    dense = model.embed(seqs)
    padded = model.embed([*seqs, [2, 3]])[:3]  # the short one forces packing
    torch.testing.assert_close(padded, dense, atol=1e-6, rtol=0)


def test_matches_transformers_bert_with_mean_pooling(
    model: SentenceBert, ids: list[list[int]], tiny_bert: Path
) -> None:
    transformers = pytest.importorskip("transformers", reason="transformers (dev extra) missing")
    cfg = transformers.BertConfig.from_pretrained(str(tiny_bert))
    ref = transformers.BertModel(cfg, add_pooling_layer=True).eval()
    ref.load_state_dict(random_weights(), strict=False)
    width = max(map(len, ids))
    input_ids = torch.tensor([seq + [0] * (width - len(seq)) for seq in ids])
    mask = (torch.arange(width)[None] < torch.tensor([len(s) for s in ids])[:, None]).long()
    with torch.no_grad():
        hidden = ref(input_ids=input_ids, attention_mask=mask).last_hidden_state
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    torch.testing.assert_close(model.embed(ids), F.normalize(pooled, dim=-1), atol=2e-6, rtol=0)


def test_without_normalize_the_mean_is_returned(tiny_bert: Path, ids: list[list[int]]) -> None:
    model = load_sentence_bert(tiny_bert, CPU, torch.float32)[0]
    model.normalize = False
    raw = model.embed(ids)

    assert not torch.allclose(raw.norm(dim=1), torch.ones(len(ids)))
    model.normalize = True
    torch.testing.assert_close(model.embed(ids), F.normalize(raw, dim=-1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_lower_precision_stays_close_and_returns_float32(
    tiny_bert: Path, ids: list[list[int]], model: SentenceBert, dtype: torch.dtype
) -> None:
    low = load_sentence_bert(tiny_bert, CPU, dtype)[0]
    out = low.embed(ids)

    assert low.dtype == dtype and out.dtype == torch.float32
    assert F.cosine_similarity(out, model.embed(ids)).min() > 0.99


def test_bad_batches_are_refused(model: SentenceBert) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        model.embed([])
    with pytest.raises(ValueError, match="non-empty"):
        model.embed([[2, 3], []])
    with pytest.raises(ValueError, match=f"{POSITIONS} positions"):
        model.embed([[5] * (POSITIONS + 1)])
