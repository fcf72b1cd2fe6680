"""Running the server as more than one process: a Ray Serve application.

``replicas``  how many engines, and the Serve settings that fit one engine (Ray-free, tested
              without Ray)
``ray_app``   the Serve deployment: one engine per replica behind ``api.app.create_app``, and
              the application builder that ``serve run`` and the Serve config file name
``ray_run``   ``python -m server_ref serve --ray``: a local Ray instance, Serve's HTTP proxy,
              the application, until SIGINT/SIGTERM
``affinity``  ``--router prefix``: which replica a conversation goes to (Ray-free)
``forwarding`` the front that reads each request and carries it whole to an engine replica,
              so the router sees the prompt (Ray-free)
``ray_router`` the prefix router on Serve's ``RequestRouter`` API
``ray_loopback`` a replica's own gRPC server on the node's loopback address, not on every
              interface

Only the ``ray_*`` modules import Ray (the ``ray`` extra); ``sdk`` and
the plain server never do.
"""
