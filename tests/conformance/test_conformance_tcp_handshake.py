"""The conformance suite's tcp handshake tests, run by `make test`."""

from layers.conformance.suite.test_tcp_handshake import *  # noqa: F403
