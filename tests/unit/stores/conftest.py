"""Rewrite asserts in the conformance package, so a failing check there shows its values like a test does."""

import pytest

# The suite lives in a plain package (so pytest does not collect the abstract classes); registering it here,
# before any test module imports it, gives its asserts the same introspection as a test module's.
pytest.register_assert_rewrite("tests.unit.stores.conformance")
