"""``sdk.vectors``: cosine similarity and top-k, plain Python and numpy giving the same."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import numpy as np
import pytest

from sdk.vectors import Match, cosine_similarities, cosine_similarity, top_k

PATHS = [False, True]  # use_numpy


def rows(n: int, d: int, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.gauss(0, 1) for _ in range(d)] for _ in range(n)]


@pytest.mark.parametrize("use_numpy", PATHS)
def test_scores_are_cosines_in_row_order(use_numpy: bool) -> None:
    matrix = rows(50, 16)
    query = rows(1, 16, seed=1)[0]

    scores = cosine_similarities(query, matrix, use_numpy=use_numpy)

    expected = [
        sum(a * b for a, b in zip(query, row, strict=True))
        / math.sqrt(sum(a * a for a in query) * sum(b * b for b in row))
        for row in matrix
    ]
    assert scores == pytest.approx(expected, abs=1e-12)
    assert all(type(s) is float for s in scores)


@pytest.mark.parametrize("use_numpy", PATHS)
def test_top_k_is_the_best_k_best_first(use_numpy: bool) -> None:
    matrix = rows(200, 8)
    query = rows(1, 8, seed=2)[0]
    scores = cosine_similarities(query, matrix, use_numpy=False)
    best = sorted(range(200), key=lambda i: -scores[i])[:5]

    found = top_k(query, matrix, k=5, use_numpy=use_numpy)

    assert [m.row for m in found] == best
    assert [m.score for m in found] == pytest.approx([scores[i] for i in best], abs=1e-12)
    assert top_k(query, matrix, k=500, use_numpy=use_numpy)[-1].row == min(
        range(200), key=scores.__getitem__
    )


@pytest.mark.parametrize("use_numpy", PATHS)
def test_ties_keep_the_lower_row_first_at_the_cut_too(use_numpy: bool) -> None:
    matrix = [[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 5.0]]

    assert top_k([1.0, 0.0], matrix, k=2, use_numpy=use_numpy) == [
        Match(1, 1.0),
        Match(2, 1.0),
    ]


@pytest.mark.parametrize("use_numpy", PATHS)
def test_a_zero_vector_scores_zero(use_numpy: bool) -> None:
    assert cosine_similarities([0.0, 0.0], [[1.0, 0.0]], use_numpy=use_numpy) == [0.0]
    assert cosine_similarities([1.0, 0.0], [[0.0, 0.0]], use_numpy=use_numpy) == [0.0]
    assert cosine_similarity([0.0, 0.0], [1.0, 1.0]) == 0.0


@pytest.mark.parametrize("use_numpy", PATHS)
def test_empty_matrix_and_bad_shapes(use_numpy: bool) -> None:
    assert top_k([1.0], [], use_numpy=use_numpy) == []
    with pytest.raises(ValueError, match="different widths: 2 and 3"):
        cosine_similarities([1.0, 0.0], [[1.0, 0.0, 0.0]], use_numpy=use_numpy)
    with pytest.raises(ValueError, match=r"widths|equal width"):
        top_k([1.0, 0.0], [[1.0, 0.0], [1.0]], use_numpy=use_numpy)
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            top_k([1.0], [[1.0]], k=k, use_numpy=use_numpy)  # type: ignore[arg-type]


def test_numpy_arrays_are_used_as_they_are() -> None:
    matrix = np.asarray(rows(20, 8), dtype=np.float32)
    query = matrix[3] * 2

    found = top_k(query.tolist(), matrix, k=1)
    assert found[0].row == 3 and found[0].score == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="one vector"):
        cosine_similarities([[1.0]], matrix)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="rows of equal width"):
        cosine_similarities([1.0], np.zeros((2, 2, 2)))


def test_lists_are_searched_in_plain_python_unless_numpy_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    matrix = rows(30, 4)
    monkeypatch.setitem(sys.modules, "numpy", None)  # numpy cannot be imported
    assert top_k(matrix[7], matrix, k=1) == [Match(7, pytest.approx(1.0))]
    with pytest.raises(ImportError, match="numpy cannot be imported"):
        top_k(matrix[7], matrix, use_numpy=True)


def test_importing_the_module_loads_no_numpy() -> None:
    code = "import sys, sdk.vectors; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
