"""Getting a model: the registry of known models (``registry``), GGUF reading (``gguf``), GGUF
tensors -> a built model (``llama_weights``) and the GGUF vocabulary -> its tokenizer
(``gguf_tokenizer``)."""

from __future__ import annotations
