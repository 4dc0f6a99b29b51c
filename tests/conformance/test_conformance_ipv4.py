"""The conformance suite's ipv4 tests (layers.conformance.suite.test_ipv4), run by `make test`."""

from layers.conformance.suite.test_ipv4 import *  # noqa: F403
