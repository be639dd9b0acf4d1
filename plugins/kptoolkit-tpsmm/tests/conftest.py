"""The kptoolkit-tpsmm plugin's tests: kptoolkit's cache in a temporary folder, as in tests/

Run from the repository root, with tests/ on the path (pyproject's `pythonpath`) for the shared
helper modules (train_fixtures.py, ...). The tests skip when the plugin is not installed.
"""

from __future__ import annotations

from plugin_fixtures import isolated_cache

__all__ = ["isolated_cache"]  # the shared autouse fixture, registered for these tests
