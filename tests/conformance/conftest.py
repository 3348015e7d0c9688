"""Rewrite asserts in the conformance suites (plain modules, not collected), so a failing check shows its values."""

import pytest

# The store suite is a plain package and the sandbox suite a plain module (so pytest does not collect their
# abstract classes); registering them here, before any test module imports them, gives their asserts the same
# introspection as a test module's.
pytest.register_assert_rewrite("tests.conformance.stores", "tests.conformance.sandbox.suite")
