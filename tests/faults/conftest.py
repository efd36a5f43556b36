"""Fixtures of the fault suite: wsgate_testing.fixtures (tests/pylib).

Every process a test starts is registered in its `procs` fixture and stopped
by PID at teardown, also when the test fails; the output of every process a
failed test started is attached to its report ("wsgate/redis logs").
"""

from wsgate_testing.fixtures import *  # noqa: F401,F403  (fixtures and the report hook)
