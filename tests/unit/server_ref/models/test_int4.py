"""4-bit layers on the GGUF's own Q4_0 / Q4_1 weights: the numbers of the dequantized weights
within the kernel's bf16 roundings, the same numbers for a row alone as in a batch, and a
model built with them close to the bf16 one."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from kit.tinymodel import write_tiny_gguf
from torch import Tensor, nn

from server_ref.loading.gguf import load_int4_weights, load_tensors, open_gguf, read_config
from server_ref.loading.llama_weights import build_model
from server_ref.models import int4
from server_ref.models.int4 import GROUP, Int4Linear, Int4Weight, int4_supported
from server_ref.models.llama import Llama
from server_ref.models.output_head import RescoredHead
from server_ref.models.prepack import PackedLinear

needs_kernel = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
    reason="the int4 CPU kernel is vectorized for x86 AVX2 / AVX-512 only",
)


def _random_weight(n: int, k: int, seed: int) -> Int4Weight:
    # Q4_1-like numbers: fp16 scales and offsets, an offset near -8 scales (a group's minimum)
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=g)
    d = (torch.rand(n, k // GROUP, generator=g) * 0.01 + 1e-3).half().float()
    m = (-8 * d * (1 + 0.2 * torch.randn(n, k // GROUP, generator=g))).half().float()
    return Int4Weight(q, d, m)


def _error_bound(x: Tensor, w: Int4Weight, exact: Tensor) -> Tensor:
    """What the kernel may be off by: its scale d and zero m + 8d rounded to bf16 (relative
    2^-9 each), its result rounded to bf16 (2^-9), fp32 sums; doubled for slack."""
    n, k = w.q.shape
    centred = (w.q.view(n, k // GROUP, GROUP).double() - 8) * w.scale.double()[..., None]
    zero = (w.offset.double() + 8 * w.scale.double())[..., None].expand(-1, -1, GROUP)
    terms = (centred.abs() + zero.abs()).reshape(n, k)
    return 2.0**-8 * (x.abs().double() @ terms.T + exact.abs()) + 1e-6


@needs_kernel
@pytest.mark.parametrize(("n", "k"), [(960, 576), (576, 1536), (16, 32), (48, 96)])
def test_int4_linear_computes_the_dequantized_weights_product(n: int, k: int) -> None:
    w = _random_weight(n, k, seed=n + k)
    x = torch.randn(37, k, generator=torch.Generator().manual_seed(k))
    got = Int4Linear(w)(x)
    exact = x.bfloat16().double() @ w.dequantize().double().T  # the inputs are rounded to bf16
    assert got.dtype == torch.float32 and got.shape == (37, n)
    assert bool(((got.double() - exact).abs() <= _error_bound(x, w, exact)).all())
    # and it really ran on 4-bit numbers, not on something that happens to be close
    assert not torch.equal(got, x @ w.dequantize().T)


@needs_kernel
def test_a_row_gets_the_same_numbers_alone_as_in_any_batch() -> None:
    # the kernel blocks rows by four and sums each on its own, in a fixed order
    layer = Int4Linear(_random_weight(576, 1536, seed=0))
    x = torch.randn(33, 1536, generator=torch.Generator().manual_seed(1))
    whole = layer(x)
    for rows in range(1, 34):
        assert torch.equal(layer(x[:rows]), whole[:rows]), rows
    assert layer(x[5]).shape == (576,)  # a 1-D input keeps its shape
    assert torch.equal(layer(x[5]), whole[5])
    assert torch.equal(layer(x[None, 3:9]), whole[None, 3:9])


class _Recorder(nn.Module):
    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.calls: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append(x.shape[0])
        return torch.zeros(*x.shape[:-1], self.out_features)


@needs_kernel
def test_steps_above_max_rows_go_to_the_dense_layer() -> None:
    w = _random_weight(32, 64, seed=3)
    dense = _Recorder(32)
    layer = Int4Linear(w, dense, max_rows=4)
    x = torch.randn(5, 64)
    assert layer(x[:4]).abs().sum() > 0 and dense.calls == []
    assert layer(x).abs().sum() == 0 and dense.calls == [5]
    assert "above 4 rows" in repr(layer) and "int4 g32" in repr(layer)


def test_int4_supported_needs_an_x86_vector_unit_and_the_kernels_shapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(int4.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert int4_supported(_random_weight(960, 576, 0))
    assert not int4_supported(_random_weight(24, 576, 0))  # rows not a multiple of 16
    q = torch.zeros(16, 48, dtype=torch.uint8)
    assert not int4_supported(Int4Weight(q, torch.ones(16, 1), torch.zeros(16, 1)))
    for other in ("AVX2", "DEFAULT", "SVE256"):
        monkeypatch.setattr(int4.torch.backends.cpu, "get_cpu_capability", lambda c=other: c)
        assert int4_supported(_random_weight(16, 32, 0)) == (other == "AVX2")


def test_load_int4_weights_reads_q4_0_and_q4_1_as_gguf_dequantizes_them(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "q4.gguf", quant_types=[Q.Q4_0, Q.Q4_1, Q.Q8_0])
    reader = open_gguf(path)
    weights = load_int4_weights(reader)
    kinds = {t.name: Q(t.tensor_type) for t in reader.tensors}
    assert set(weights) == {name for name, kind in kinds.items() if kind in (Q.Q4_0, Q.Q4_1)}
    assert {kinds[name] for name in weights} == {Q.Q4_0, Q.Q4_1}
    for t in reader.tensors:
        if t.name in weights:
            want = gguf.quants.dequantize(t.data, t.tensor_type)
            w = weights[t.name]
            assert w.q.dtype == torch.uint8 and int(w.q.max()) <= 15
            assert np.array_equal(w.dequantize().numpy(), want.reshape(w.q.shape))


@pytest.fixture(scope="module")
def q4_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("q4") / "q4.gguf"
    return write_tiny_gguf(path, dim=256, n_layers=2, ffn=512, quant_types=[Q.Q4_1])


def _build(path: Path, int4_rows: int | str | None) -> Llama:
    r = open_gguf(path)
    weights = None if int4_rows == "none" else load_int4_weights(r)
    rows = None if isinstance(int4_rows, str) else int4_rows
    cfg, tensors = read_config(r), load_tensors(r)
    cpu = torch.device("cpu")
    return build_model(
        cfg, tensors, cpu, torch.float32, matmul_dtype=torch.bfloat16, int4=weights,
        int4_max_rows=rows,
    )  # fmt: skip


@needs_kernel
def test_a_mixed_model_runs_its_4_bit_layers_on_the_files_weights(q4_gguf: Path) -> None:
    bf16, always, auto = _build(q4_gguf, "none"), _build(q4_gguf, "all"), _build(q4_gguf, 4)
    layers = [m for m in always.modules() if isinstance(m, Int4Linear)]
    assert len(layers) == 4 * always.cfg.n_layers  # qkv, o, gate_up, down of every block
    assert all(m.dense is None for m in layers)
    assert all(
        isinstance(m.dense, PackedLinear) for m in auto.modules() if isinstance(m, Int4Linear)
    )
    assert not any(isinstance(m, Int4Linear) for m in bf16.modules())
    assert always.matmul_dtype == torch.bfloat16
    # only auto, whose batches already mix two kernels, gives a lone decode its own attention
    assert auto.lone_decode and not always.lone_decode and not bf16.lone_decode
    for model in (bf16, always, auto):
        assert isinstance(model.lm_head, RescoredHead)  # mixed precision: the bf16 head
    tokens = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = bf16.forward_full(tokens)
        got = always.forward_full(tokens)
        # 9 rows are above auto's 4: its dense bf16 layers run, the bf16 model's numbers
        assert torch.equal(auto.forward_full(tokens), want)
        assert torch.equal(auto.forward_full(tokens[:, :4]), always.forward_full(tokens[:, :4]))
    torch.testing.assert_close(got, want, atol=0.1, rtol=0)
    assert not torch.equal(got, want)


@needs_kernel
def test_4_bit_layers_only_where_every_part_of_a_fused_weight_is_4_bit(tmp_path: Path) -> None:
    # q, k, v and gate, up are fused: one part in another format keeps the bf16 layer
    path = write_tiny_gguf(tmp_path / "m.gguf", n_layers=1, quant_types=[Q.Q4_1, Q.Q8_0])
    model = _build(path, "all")
    # cycle Q4_1, Q8_0 from token_embd: q Q8_0, k Q4_1, v Q8_0, o Q4_1, gate Q8_0, up Q4_1,
    # down Q8_0 -> only the output projection is 4-bit
    kinds = {name: type(m).__name__ for name, m in model.blocks[0].named_modules() if name}
    assert kinds["attn.wo"] == "Int4Linear"
    assert kinds["attn.wqkv"] == kinds["mlp.gate_up"] == kinds["mlp.down"] == "PackedLinear"
