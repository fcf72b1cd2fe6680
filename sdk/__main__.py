"""``python -m sdk``: the SDK's command line (see ``sdk.cli``)."""

from __future__ import annotations

from sdk.cli import main

raise SystemExit(main())
