# The README's two commands are `make demo` and `make test`; both build .venv/ first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PLUGINS := arp ipv4 icmp udp tcp cubic bbr ipv6 icmpv6 ndp
STAMP  := $(VENV)/.installed
# Debian packages the integration tests and the demo drive from the Linux side.
SYSTEM_TOOLS := ip:iproute2 nsenter:util-linux ping:iputils-ping nft:nftables tcpdump:tcpdump curl:curl nc:netcat-openbsd ethtool:ethtool

.PHONY: venv system demo test architecture lint typecheck check bench bench-more clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) $(wildcard examples/*/pyproject.toml) Makefile
	@$(MAKE) --no-print-directory system
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' $(foreach p,$(PLUGINS),-e plugins/$(p)) $(foreach e,$(wildcard examples/*/pyproject.toml),-e $(dir $(e)))
	@# tools/ (the custom import-linter contract) on the venv's path, so a bare lint-imports works
	$(PY) -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'layers-tools.pth').write_text(str(pathlib.Path('tools').resolve()) + '\\n')"
	touch $(STAMP)

# Installs the Linux-side tools when running as root and they are missing; never fails the build
# for a non-root user (the tests that need them skip with a reason instead).
system:
	@missing=""; for pair in $(SYSTEM_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: missing$$missing (root tests will skip)"; fi; fi

demo: venv
	$(VENV)/bin/layers demo

test: venv
	$(PY) -m pytest -q -p no:cacheprovider
	$(VENV)/bin/ruff check layers plugins tests examples tools
	$(VENV)/bin/mypy
	$(MAKE) --no-print-directory architecture

# The architecture contracts in .importlinter (the core imports no plugin, plugins never import
# each other, plugins and examples import only public names of layers).
architecture: venv
	$(VENV)/bin/lint-imports --no-cache

# Benchmarks print figures and never assert timings; compare numbers only within one run.
# `make bench` (root: it makes its own namespaces and deletes them) prints the table of
# tests/bench/bench.py and writes bench-results.json; `make bench-more` runs the older,
# narrower benches.
BENCHES := tests/ipv4/bench_ipv4.py tests/icmp/bench_icmp.py tests/udp/bench_udp.py tests/tcp/bench_tcp_rx_cost.py \
	tests/tcp/bench_tcp_conn_cost.py tests/bench/rx_cost.py tests/bench/echo_cost.py
bench: venv
	$(PY) tests/bench/bench.py

bench-more: venv
	@for b in $(BENCHES); do echo "== $$b"; $(PY) $$b || exit 1; done
	@echo "== tests/links/bench_links.py tap"; $(PY) tests/links/bench_links.py tap
	@echo "== tests/bench/ping_rtt.py"; $(PY) tests/bench/ping_rtt.py
	@for b in $(wildcard tests/bench/*_bench.py); do echo "== $$b"; $(PY) $$b || exit 1; done

lint: venv
	$(VENV)/bin/ruff check layers plugins tests examples tools

typecheck: venv
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info */*.egg-info plugins/*/*.egg-info

# Coverage-guided fuzzing (atheris) of the wire parsers, IPv4 and IPv6 reassembly and a dual-stack
# receive path, seeded with frames our own stacks make; prints libFuzzer's totals. A crash
# leaves its input as crash-* here. `make test` runs a bounded few seconds of it.
FUZZ_RUNS ?= 1000000
fuzz: venv
	$(PY) tests/fuzz/fuzz.py --runs $(FUZZ_RUNS)
