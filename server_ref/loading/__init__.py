"""Getting weights: the model registry (``registry``), GGUF reading (``gguf``) and GGUF
tensors -> a built model (``llama_weights``)."""

from __future__ import annotations
