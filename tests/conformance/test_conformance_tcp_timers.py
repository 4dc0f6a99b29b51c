"""The conformance suite's tcp timers tests, run by `make test`."""

from layers.conformance.suite.test_tcp_timers import *  # noqa: F403
