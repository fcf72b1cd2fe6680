"""The router: one client over several OpenAI-compatible servers (replicas or providers).

* ``endpoint`` — ``Endpoint``: one server (URL, key, weight, models, aliases, rate limits)
* ``table``    — ``RouteTable``: the endpoints with their configs and policies, and the shared
  routing state (``sdk._protocol.routing``)
* ``flow``     — the flows a router runs: each attempt placed by ``sdk._protocol.routing``,
  planned by that endpoint's policies (``sdk._policies``), failing over when it fails
* ``router``   — ``Router`` / ``AsyncRouter``: a ``Client`` / ``AsyncClient`` running those
  flows; the clients' resources, streams and drivers are reused as they are

The decisions (strategies, health, cooldowns, failover) are pure and live in
``sdk._protocol.routing``; this package composes them with the policies and the core flows.
"""
