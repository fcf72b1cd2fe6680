"""The sans-I/O core of the SDK: every decision, no sockets, no sleeping, no httpx calls.

``httpx.Request`` / ``httpx.Response`` appear only as data. The modules, bottom up:

* ``options``    — client configuration (defaults, ``LLM_SDK_*`` variables) and per-call options
* ``request``    — endpoint descriptions (``APICall``), parameter validation, request building
* ``retry``      — which failures to retry and how long to wait (tenacity as a state machine)
* ``sse``        — a push-style WHATWG Server-Sent Events decoder
* ``stream``     — SSE events to typed chunks: ``[DONE]``, in-stream errors, truncation
* ``deltas``     — the merge rules for streamed message deltas (tool calls by index ...)
* ``accumulate`` — chunks folded back into the non-streaming result
* ``strict_schema`` / ``structured`` — strict JSON schemas from types; ``parse()``'s results
* ``function_tools`` / ``tool_loop`` — tools from Python functions; the tool-running loop
* ``actions``    — what a flow asks its driver to do (send, read, close, sleep)
* ``flow``       — the per-call generator that ties it together; the clients drive it
* ``routing``    — a router's decisions: strategies, endpoint health and cooldowns
* ``prefix``     — what prefix affinity remembers (prompt-prefix hashes, a consistent-hash ring)
* ``failover``   — after a failed attempt: another endpoint, the same one, or give up

Import from the submodules. The clients need only ``options`` and ``actions`` to exist, so
creating one loads no pydantic model; the first call loads the rest.

Rules: nothing in this package may block, sleep or touch the network, so all of it is tested
bytes-in / objects-out, with 100% branch coverage; and it imports nothing from the rest of
``sdk`` but the wire types (``sdk.types``) and the errors (``sdk._exceptions``), so the
layers above (``sdk._policies``, the clients) wrap it and never the other way round.
"""
