"""The conformance suite's udp tests (layers.conformance.suite.test_udp), run by `make test`."""

from layers.conformance.suite.test_udp import *  # noqa: F403
