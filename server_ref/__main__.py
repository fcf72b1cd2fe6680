"""``python -m server_ref ...``: see ``server_ref.cli``."""

from __future__ import annotations

from server_ref.cli import main

raise SystemExit(main())
