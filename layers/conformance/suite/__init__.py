"""The conformance tests. Each takes the ``dut`` and ``tb`` fixtures and runs against every DUT
given with ``--dut``."""
