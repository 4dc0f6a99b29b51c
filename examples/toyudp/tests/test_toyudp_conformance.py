"""The conformance suite's UDP and ICMP tests, against toyudp (SQLAlchemy's pattern: import
the suite's tests into the project's own test module)."""

from layers.conformance.suite.test_icmp import *  # noqa: F403
from layers.conformance.suite.test_udp import *  # noqa: F403
