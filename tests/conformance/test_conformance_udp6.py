"""The conformance suite's udp6 tests (layers.conformance.suite.test_udp6), run by `make test`."""

from layers.conformance.suite.test_udp6 import *  # noqa: F403
