"""Helpers the tests share (imported as ``kit.*``; pytest puts ``tests/`` on ``sys.path``).

- ``clients``: one test body against ``Client`` and ``AsyncClient`` (``Api``), and response
  bodies for ``httpx.MockTransport`` (SSE, chunks, a body that records being closed).
- ``grammar_walk``: walks a grammar's token masks with random choices, for the constraint
  tests (with JSON schemas from ``tests/fixtures/json_schemas.json``).
- ``hosted``: replies and streams shaped like a hosted service's (tool calls, annotations,
  usage details, reasoning), for the wire-fidelity tests.
- ``tokenizer_server``: a scripted OpenAI-compatible server with a tokenizer export, a toy
  BPE tokenizer and a simulated clock, for the SDK's policy tests.
- ``tinymodel``: writes a tiny random-weight Llama GGUF with a byte-level vocabulary.
- ``tinybert``: writes a tiny random sentence-transformers folder (safetensors, tokenizer.json).
- ``fake_engine``: a scripted ``EngineClient`` for HTTP-layer tests (no model, no torch).
- ``live_server``: runs ``python -m server_ref serve`` as a subprocess for a block.
- ``live_clients``: the official ``openai`` client, sync or async, and metrics polling.
- ``precision``: the ``--int4`` value that keeps greedy streams the same batched as alone.
"""
