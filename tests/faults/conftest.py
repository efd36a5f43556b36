"""Fixtures for the fault suite: the integration helpers (real redis-server
and wsgate processes on free ports, stopped by PID at teardown)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from wsgate_helpers import Procs  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    procs = getattr(item, "_wsgate_procs", None)
    if procs is not None and rep.failed and call.when in ("setup", "call"):
        rep.sections.append(("wsgate/redis logs", procs.dump()))


@pytest.fixture
def procs(request, tmp_path):
    p = Procs(tmp_path)
    request.node._wsgate_procs = p
    yield p
    p.close()
