"""oneDNN-prepacked linear layers compute what nn.Linear computes, or are not used at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from server_ref.loading.gguf import load_tensors, open_gguf, read_config
from server_ref.loading.llama_weights import build_model
from server_ref.models import prepack
from server_ref.models.llama import Llama
from server_ref.models.output_head import RescoredHead
from server_ref.models.prepack import ROW_BUCKET, PackedLinear, padded_rows, prepack_linears

needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN"
)


def _build(
    path: Path, dtype: torch.dtype, pack: bool, matmul_dtype: torch.dtype | None = None
) -> Llama:
    r = open_gguf(path)
    cpu = torch.device("cpu")
    return build_model(
        read_config(r), load_tensors(r), cpu, dtype, prepack=pack, matmul_dtype=matmul_dtype
    )


def _linears(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@needs_onednn
@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 0.25)], ids=["fp32", "bf16"]
)
def test_prepacked_model_gives_the_plain_models_logits(
    tiny_gguf: Path, dtype: torch.dtype, atol: float
) -> None:
    plain, packed = _build(tiny_gguf, dtype, False), _build(tiny_gguf, dtype, True)
    n_layers = plain.cfg.n_layers
    assert _linears(plain, PackedLinear) == 0
    # fused qkv, o, fused gate_up, down per block, plus the (tied) output head
    assert _linears(packed, PackedLinear) == 4 * n_layers + 1
    assert _linears(packed, nn.Linear) == 0
    tokens = torch.randint(
        0, plain.cfg.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        want, got = plain.forward_full(tokens), packed.forward_full(tokens)
    torch.testing.assert_close(got, want, atol=atol, rtol=0)
    # the tied embedding is still the model's own parameter, untouched by packing
    assert packed.embed.weight.dtype == dtype


@needs_onednn
@pytest.mark.parametrize("rows", [1, 5, 16, 17, 64])
def test_packed_linear_takes_any_row_count(rows: int) -> None:
    g = torch.Generator().manual_seed(rows)
    lin = nn.Linear(40, 24, bias=False)
    x = torch.randn(rows, 40, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(PackedLinear(lin.weight)(x), lin(x), atol=1e-5, rtol=1e-5)
    assert "oneDNN" in repr(PackedLinear(lin.weight))


def test_row_counts_come_in_a_bounded_set_of_shapes() -> None:
    shapes = {padded_rows(n) for n in range(1, 513)}
    assert {padded_rows(n) for n in range(2, ROW_BUCKET + 1)} == set(range(2, ROW_BUCKET + 1))
    assert padded_rows(1) == 2 and padded_rows(ROW_BUCKET + 1) == 2 * ROW_BUCKET
    assert all(n <= padded_rows(n) < n + ROW_BUCKET for n in range(1, 513))
    assert len(shapes) == ROW_BUCKET - 1 + 512 // ROW_BUCKET - 1


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_a_rows_result_is_the_same_at_any_row_count(dtype: torch.dtype) -> None:
    # padding a step to its bucket, or a lone row to two, must not change a real row's bits
    g = torch.Generator().manual_seed(3)
    lin = PackedLinear(torch.randn(96, 576, generator=g).to(dtype))
    x = torch.randn(130, 576, generator=g)
    with torch.no_grad():
        want = lin(x)
        for rows in (1, 2, 17, 33, 64, 100):
            assert torch.equal(lin(x[:rows]), want[:rows]), rows
        assert lin(x[:5].reshape(1, 5, 576)).shape == (1, 5, 96)


def test_unsupported_dtype_leaves_the_model_alone() -> None:
    model = nn.Sequential(nn.Linear(8, 8, bias=False)).double()
    assert prepack_linears(model) == 0
    assert isinstance(model[0], nn.Linear)


@needs_onednn
@pytest.mark.parametrize("rows", [1, 7])
def test_layers_with_bias_are_packed_with_it(rows: int) -> None:
    torch.manual_seed(rows)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 5, bias=False))
    x = torch.randn(rows, 8)
    with torch.no_grad():
        want = model(x)
        assert prepack_linears(model) == 2
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)
    assert isinstance(model[0], PackedLinear) and model[0].bias is not None


@needs_onednn
def test_a_packing_that_fails_its_probe_falls_back_to_nn_linear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a build whose oneDNN raises for the dtype, and one whose results are off, both keep nn.Linear
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 4, bias=False))

    def raises(self: PackedLinear, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no kernel")

    monkeypatch.setattr(PackedLinear, "forward", raises)
    assert prepack_linears(model) == 0
    monkeypatch.setattr(PackedLinear, "forward", lambda self, x: torch.zeros(x.shape[0], 8))
    assert prepack_linears(model) == 0
    assert _linears(model, nn.Linear) == 2
    monkeypatch.undo()
    assert prepack_linears(model) == 2
    assert _linears(model, PackedLinear) == 2


def test_no_onednn_means_no_packing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepack.torch.backends.mkldnn, "is_available", lambda: False)
    model = nn.Sequential(nn.Linear(8, 8, bias=False))
    assert prepack_linears(model) == 0


@needs_onednn
def test_mixed_precision_keeps_fp32_activations_and_a_rescored_head(tiny_gguf: Path) -> None:
    plain = _build(tiny_gguf, torch.float32, False)
    mixed = _build(tiny_gguf, torch.float32, True, matmul_dtype=torch.bfloat16)
    assert (mixed.dtype, mixed.matmul_dtype) == (torch.float32, torch.bfloat16)
    assert (plain.dtype, plain.matmul_dtype) == (torch.float32, torch.float32)
    packed = [m for m in mixed.modules() if isinstance(m, PackedLinear)]
    # the head: bf16 with its top logits recomputed exactly (models.output_head)
    head = mixed.lm_head
    assert isinstance(head, RescoredHead) and head.weight.dtype == torch.float32
    assert all(m.matmul_dtype == torch.bfloat16 for m in packed)
    assert "bfloat16" in repr(packed[0])
    tokens = torch.randint(
        0, plain.cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3)
    )
    with torch.inference_mode():
        want, got = plain.forward_full(tokens), mixed.forward_full(tokens)
    assert got.dtype == torch.float32
    # bf16 rounding of weights and matmul inputs: close to fp32, and not the same numbers
    torch.testing.assert_close(got, want, atol=0.1, rtol=0)
    assert not torch.equal(got, want)


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_lone_row_gets_the_numbers_it_gets_in_a_batch(dtype: torch.dtype) -> None:
    # oneDNN sums a single row in another order; PackedLinear multiplies it as two rows
    g = torch.Generator().manual_seed(0)
    w = torch.randn(576, 1536, generator=g) * 0.02
    lin = PackedLinear(w, dtype)
    for _ in range(20):
        x = torch.randn(9, 1536, generator=g)
        alone = lin(x[:1])
        assert alone.shape == (1, 576)
        assert all(torch.equal(lin(x[:m])[:1], alone) for m in (2, 3, 5, 9))
    assert lin(x[0]).shape == (576,)  # a 1-D input keeps its shape
