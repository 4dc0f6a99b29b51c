"""The conformance suite's ipv6 tests (layers.conformance.suite.test_ipv6), run by `make test`."""

from layers.conformance.suite.test_ipv6 import *  # noqa: F403
