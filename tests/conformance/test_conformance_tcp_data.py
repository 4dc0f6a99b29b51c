"""The conformance suite's tcp data tests, run by `make test`."""

from layers.conformance.suite.test_tcp_data import *  # noqa: F403
