"""The conformance suite's arp tests (layers.conformance.suite.test_arp), run by `make test`."""

from layers.conformance.suite.test_arp import *  # noqa: F403
