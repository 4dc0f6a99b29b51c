"""The conformance suite's tcp rst tests, run by `make test`."""

from layers.conformance.suite.test_tcp_rst import *  # noqa: F403
