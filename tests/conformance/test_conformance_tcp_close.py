"""The conformance suite's tcp close tests, run by `make test`."""

from layers.conformance.suite.test_tcp_close import *  # noqa: F403
