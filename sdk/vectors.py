"""Cosine similarity and top-k search over embeddings, in plain Python.

What a small retrieval step needs, without a vector database or numpy: score a query
embedding against a matrix of embeddings (one row per passage) and keep the best k. Rows
are lists of floats, what ``client.embeddings.create`` returns, and are searched in plain
Python. A numpy array given as the matrix is searched with numpy, as it is (no copy).

``benchmarks/bench_vectors.py`` (1,000 x 384, k=5, three runs on the shared 2-core development
VM): 13-15.5 ms a query in plain Python, 0.18 ms with numpy on a float32 array. numpy on a list
of lists is no faster than plain Python (16-19.5 ms: converting the lists is the cost), so lists
never take that path by default; convert once (``numpy.asarray(rows)``) to search many times.

    >>> rows = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    >>> [(m.row, round(m.score, 3)) for m in top_k([1.0, 0.1], rows, k=2)]
    [(0, 0.995), (1, 0.677)]
    >>> cosine_similarity([1.0, 0.0], [0.6, 0.8])
    0.6

A zero vector has no direction: its similarity to anything is 0.0 (as scikit-learn's).
"""

from __future__ import annotations

import heapq
import importlib.util
import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Match", "cosine_similarities", "cosine_similarity", "top_k"]

Vector = Sequence[float]
Matrix = Sequence[Sequence[float]]  # or a 2-D numpy array


class Match(NamedTuple):
    """One row of the matrix and its cosine similarity to the query."""

    row: int  # index into the matrix
    score: float


def cosine_similarity(a: Vector, b: Vector) -> float:
    """The cosine of the angle between ``a`` and ``b`` (1.0: same direction).

    >>> cosine_similarity([3.0, 4.0], [6.0, 8.0])
    1.0
    """
    _check_width(len(a), len(b))
    norms = math.hypot(*a) * math.hypot(*b)
    return sum(map(operator.mul, a, b)) / norms if norms else 0.0


def cosine_similarities(
    query: Vector, matrix: Matrix, *, use_numpy: bool | None = None
) -> list[float]:
    """The cosine similarity of ``query`` to each row of ``matrix``, in row order.

    ``use_numpy``: ``None`` (default) uses numpy for a numpy array and plain Python for
    lists; ``True`` converts lists with numpy (``ImportError`` without it); ``False`` never
    uses numpy.

    >>> cosine_similarities([1.0, 0.0], [[2.0, 0.0], [0.0, 3.0]])
    [1.0, 0.0]
    """
    if _numpy_wanted(use_numpy, matrix):
        return _np_scores(query, matrix).tolist()  # type: ignore[no-any-return]
    return _py_scores(query, matrix)


def top_k(
    query: Vector, matrix: Matrix, k: int = 5, *, use_numpy: bool | None = None
) -> list[Match]:
    """The ``k`` rows of ``matrix`` most similar to ``query``, best first (ties: lower
    index first); fewer when the matrix has fewer rows.

    >>> top_k([0.0, 1.0], [[1.0, 0.0], [0.0, 2.0]], k=1)
    [Match(row=1, score=1.0)]
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if _numpy_wanted(use_numpy, matrix):
        return _np_top_k(_np_scores(query, matrix), k)
    scores = _py_scores(query, matrix)
    best = heapq.nlargest(k, range(len(scores)), key=scores.__getitem__)  # stable: ties in order
    return [Match(i, scores[i]) for i in best]


# -- plain Python --------------------------------------------------------------------------------


def _py_scores(query: Vector, matrix: Matrix) -> list[float]:
    q_norm = math.hypot(*query)
    width = len(query)
    scores = []
    for row in matrix:
        _check_width(width, len(row))
        norms = q_norm * math.hypot(*row)
        scores.append(sum(map(operator.mul, query, row)) / norms if norms else 0.0)
    return scores


def _check_width(a: int, b: int) -> None:
    if a != b:
        raise ValueError(f"vectors of different widths: {a} and {b}")


# -- numpy ---------------------------------------------------------------------------------------


def _numpy_wanted(use_numpy: bool | None, matrix: Matrix) -> bool:
    if use_numpy is None:
        return type(matrix).__module__ == "numpy"  # an ndarray, without importing numpy
    if use_numpy and importlib.util.find_spec("numpy") is None:
        raise ImportError("use_numpy=True, but numpy cannot be imported")
    return use_numpy


def _np_scores(query: Vector, matrix: Matrix) -> npt.NDArray[Any]:
    import numpy as np

    rows = _as_matrix(np, matrix)
    q = np.asarray(query, dtype=rows.dtype)
    if q.ndim != 1:
        raise ValueError(f"the query must be one vector, got shape {q.shape}")
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=rows.dtype)
    _check_width(q.shape[0], rows.shape[1])
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(q)
    dots = rows @ q
    out: npt.NDArray[Any] = np.divide(dots, norms, out=np.zeros_like(dots), where=norms != 0)
    return out


def _as_matrix(np: Any, matrix: Matrix) -> npt.NDArray[Any]:
    try:
        rows = np.asarray(matrix)
    except ValueError:  # numpy's message for ragged rows names shapes, not the problem
        raise ValueError("the matrix must be rows of equal width") from None
    if rows.dtype.kind != "f":  # a list of lists of floats becomes float64; keep float32 arrays
        rows = rows.astype(np.float64)
    if rows.ndim == 1 and rows.shape[0] == 0:
        return rows.reshape(0, 0)  # type: ignore[no-any-return]
    if rows.ndim != 2:
        raise ValueError(f"the matrix must be rows of equal width, got shape {rows.shape}")
    return rows  # type: ignore[no-any-return]


def _np_top_k(scores: npt.NDArray[np.floating[Any]], k: int) -> list[Match]:
    import numpy as np

    n = scores.shape[0]
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition may pick any of several tied rows at the cut: take every row that
        # ties with the k-th best, then order by (score desc, index asc) like the Python path
        cut = scores[part].min()
        part = np.flatnonzero(scores >= cut)
    else:
        part = np.arange(n)
    order = np.lexsort((part, -scores[part]))[:k]
    return [Match(int(i), float(scores[i])) for i in part[order]]
