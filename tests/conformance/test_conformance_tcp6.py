"""The conformance suite's tcp6 tests (layers.conformance.suite.test_tcp6), run by `make test`."""

from layers.conformance.suite.test_tcp6 import *  # noqa: F403
