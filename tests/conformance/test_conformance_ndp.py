"""The conformance suite's ndp tests (layers.conformance.suite.test_ndp), run by `make test`."""

from layers.conformance.suite.test_ndp import *  # noqa: F403
