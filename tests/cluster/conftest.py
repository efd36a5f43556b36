"""The cluster tests import the harness from tests/pylib (see pytest.ini)."""
