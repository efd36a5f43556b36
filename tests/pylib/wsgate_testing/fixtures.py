"""Owns the shared pytest fixtures: a per-test process registry stopped by PID, redis, gateways."""

import pytest

from .procs import Procs


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


@pytest.fixture
def redis(procs):
    return procs.redis()


@pytest.fixture
def gw(procs):
    """Embedded-broker gateway (no --redis), node id n1."""
    return procs.gateway(node_id="n1")


@pytest.fixture
def rgw(procs, redis):
    """Redis-mode gateway, node id n1."""
    return procs.gateway(redis=redis, node_id="n1")


@pytest.fixture(params=["embedded", "redis"])
def anygw(request, procs):
    """One gateway, in each broker mode (the test runs twice)."""
    if request.param == "embedded":
        return procs.gateway(node_id="n1")
    return procs.gateway(redis=procs.redis(), node_id="n1")


@pytest.fixture(params=["embedded", "redis"])
def mkgw(request, procs):
    """Factory for one gateway with extra flags, in each broker mode (the
    test runs twice): mkgw("--publish-rate", "0")."""
    redis = procs.redis() if request.param == "redis" else None

    def make(*args, node_id="n1"):
        return procs.gateway(*args, redis=redis, node_id=node_id)
    return make


@pytest.fixture
def cluster(procs, redis):
    """Two gateways (node ids a and b) on one Redis: (redis, gw_a, gw_b)."""
    a = procs.gateway(redis=redis, node_id="a")
    b = procs.gateway(redis=redis, node_id="b")
    return redis, a, b


@pytest.fixture(params=["embedded", "redis", "two-nodes"])
def pubsub(request, procs):
    """(subscriber side, publisher side): one embedded gateway, one Redis
    gateway, or two gateways on one Redis with subscribers on node a and
    publishers on node b (the test runs three times)."""
    if request.param == "embedded":
        g = procs.gateway(node_id="n1")
        return g, g
    redis = procs.redis()
    if request.param == "redis":
        g = procs.gateway(redis=redis, node_id="n1")
        return g, g
    return procs.gateway(redis=redis, node_id="a"), procs.gateway(redis=redis, node_id="b")
