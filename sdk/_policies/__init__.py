"""Client middleware around the sans-I/O core: what a client adds to a call besides HTTP.

* ``options``   — ``Policies`` (client-wide) and ``PolicyOptions`` (per call, ``budget=``)
* ``registry``  — the tokenizers a client has fetched, by (server, model)
* ``remote``    — flows that fetch a model's tokenizer export, or count with ``/tokenize``
* ``counting``  — "count this prompt for this model however you can" (``client.count_tokens``)
* ``ratelimit`` — ``RateLimiter``: requests and tokens per minute, as attempt hooks
* ``guard``     — the flow every chat and completion call runs: count, plan against the
  token budget (``sdk.tokens.budget``), pass the rate limiter, then ``_protocol``'s call flow
* ``hooks``     — ``Hooks`` / ``CallHooks``: observers told of each call's requests, responses,
  retries and end, wrapped around its flow (``sdk.otel`` is one)

Everything here is a sans-I/O flow like ``_protocol``'s (driven by the clients); it uses
``sdk._protocol`` and the pure token library ``sdk.tokens``, and neither uses it.
"""
