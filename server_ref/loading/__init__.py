"""Getting a model: the registry of known models (``registry``), GGUF reading (``gguf``) and GGUF
tensors -> a built model (``llama_weights``). A GGUF's tokenizer is read by the SDK's token
library (``sdk.tokens.tokenizer_from_gguf``), so server and clients count with one code."""

from __future__ import annotations
