"""pytest configuration shared by tests/ and plugins/napari-fishcount/tests/.

Hypothesis runs derandomized and without its example database, so the suite is deterministic: the same
examples on every machine and every run (a failure found by exploring goes into a regular test).
"""
from hypothesis import settings

settings.register_profile("fishcount", derandomize=True, database=None, deadline=None)
settings.load_profile("fishcount")
