"""pytest configuration shared by tests/ and plugins/napari-fishcount/tests/.

Hypothesis runs derandomized and without its example database, so the suite is deterministic: the same
examples on every machine and every run (a failure found by exploring goes into a regular test). To
explore with fresh random examples instead: ``FISHCOUNT_HYPOTHESIS=explore python -m pytest ...``.
"""
import os

from hypothesis import settings

settings.register_profile("fishcount", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False, database=None, deadline=None)
settings.load_profile("explore" if os.environ.get("FISHCOUNT_HYPOTHESIS") == "explore" else "fishcount")
