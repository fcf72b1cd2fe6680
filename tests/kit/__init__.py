"""Helpers the tests share (imported as ``kit.*``; pytest puts ``tests/`` on ``sys.path``).

- ``tinymodel``: writes a tiny random-weight Llama GGUF with a byte-level vocabulary.
- ``fake_engine``: a scripted ``EngineClient`` for HTTP-layer tests (no model, no torch).
- ``live_server``: runs ``python -m server_ref serve`` as a subprocess for a block.
- ``live_clients``: the official ``openai`` client, sync or async, and metrics polling.
"""
