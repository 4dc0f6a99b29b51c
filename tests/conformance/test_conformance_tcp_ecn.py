"""The conformance suite's ECN tests (layers.conformance.suite.test_tcp_ecn), run by `make test`."""

from layers.conformance.suite.test_tcp_ecn import *  # noqa: F403
