"""Getting weights: the model registry (``registry``) and GGUF reading (``gguf``)."""

from __future__ import annotations
