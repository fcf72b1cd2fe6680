"""Reference server: a Llama-family model in PyTorch behind an OpenAI-compatible HTTP API.

Run ``python -m server_ref --help`` for the command line (``pull``, ``models``, ...).
"""

from __future__ import annotations
