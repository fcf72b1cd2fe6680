"""``python -m server_ref ...``: see ``server_ref.cli``."""

from __future__ import annotations

import logging
import os
import sys

from server_ref.cli import main

code = main()
if "torch" in sys.modules:
    # The command is done (a served server stopped cleanly: the engine thread is joined,
    # every connection closed). The interpreter's own teardown with torch loaded takes 1-2 s
    # more (measured on a 2-core machine), which would make a drained server overrun its
    # deadline for nothing. Only here, in the process's entry point: never in ``main``, which
    # tests call in-process.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
