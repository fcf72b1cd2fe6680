"""Running the server as more than one process: a Ray Serve application.

``replicas``  how many engines, and the Serve settings that fit one engine (Ray-free, tested
              without Ray)
``ray_app``   the Serve deployment: one engine per replica behind ``api.app.create_app``, and
              the application builder that ``serve run`` and the Serve config file name
``ray_run``   ``python -m server_ref serve --ray``: a local Ray instance, Serve's HTTP proxy,
              the application, until SIGINT/SIGTERM

Only ``ray_app`` and ``ray_run`` import Ray (the ``ray`` extra); ``sdk`` and the plain server
never do.
"""
