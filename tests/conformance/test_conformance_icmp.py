"""The conformance suite's icmp tests (layers.conformance.suite.test_icmp), run by `make test`."""

from layers.conformance.suite.test_icmp import *  # noqa: F403
