"""Helpers shared by the tests (``from kit.clients import Api``): one package, one scheme.

``tests/`` is on ``sys.path`` (pytest's default import mode puts the directory of the root
``conftest.py`` there), so ``kit`` imports the same from every test directory.
"""
