"""Suites: qualification matrices of scenarios x hardware profiles (``eden qualify``).

``model`` is the file format, ``load`` checks a suite and expands its matrix into entries,
``criteria`` judges an entry's stored summary against the suite's pass criteria.
"""

from eden.suite.load import Excluded, LoadedSuite, MatrixEntry, entry_id, load_entry, load_suite
from eden.suite.model import OWN, Suite

__all__ = ["OWN", "Excluded", "LoadedSuite", "MatrixEntry", "Suite", "entry_id", "load_entry", "load_suite"]
