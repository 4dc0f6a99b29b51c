"""Coverage-guided fuzzing of the wire parsers, IPv4 and IPv6 reassembly, a dual-stack receive path.

    python tests/fuzz/fuzz.py --runs 1000000          # what `make fuzz` runs
    python tests/fuzz/fuzz.py --seconds 5             # the bounded run `make test` makes

The seed corpus is made by our own stacks (tests/fuzz/fuzz_targets.corpus: ARP, a TCP
connection with its options, a fragmented ping...), written to ``--corpus`` (a fresh temporary
directory by default; libFuzzer adds the inputs that reach new code there). The engine is
atheris (libFuzzer for Python) when it is installed; otherwise, or with ``--engine
hypothesis``, a hypothesis-driven loop mutates the corpus (no coverage feedback: it says so).
The last line gives the totals: ``fuzz: N inputs, M crashes``. A crash stops the run, leaves
the input in ``crash-*`` under the working directory and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def write_corpus(directory: str) -> int:
    import fuzz_targets

    seeds = fuzz_targets.corpus()
    for k, seed in enumerate(seeds):
        with open(os.path.join(directory, f"seed-{k:04d}"), "wb") as f:
            f.write(seed)
    return len(seeds)


#: the packages whose code is instrumented for coverage (only ours: quicker to set up)
PACKAGES = ["layers", "layers_arp", "layers_ipv4", "layers_icmp", "layers_udp", "layers_tcp",
            "layers_ipv6", "layers_icmpv6", "layers_ndp"]


def run_atheris(args: argparse.Namespace, corpus_dir: str) -> int:
    import atheris

    with atheris.instrument_imports(include=PACKAGES):
        import fuzz_targets
        import layers_arp  # noqa: F401  (the plugins are imported here to be instrumented)
        import layers_icmp  # noqa: F401
        import layers_icmpv6  # noqa: F401
        import layers_ipv4  # noqa: F401
        import layers_ipv6  # noqa: F401
        import layers_ndp  # noqa: F401
        import layers_tcp  # noqa: F401
        import layers_udp  # noqa: F401
        fuzz_targets.Pair()  # compose once: every module the receive path needs is loaded
    if not os.listdir(corpus_dir):
        print(f"fuzz: {write_corpus(corpus_dir)} seed inputs from our own stacks", flush=True)
    count = [0]
    started = time.monotonic()

    def one(data: bytes) -> None:
        count[0] += 1
        if count[0] % 100_000 == 0:
            print(f"fuzz: {count[0]} inputs in {time.monotonic() - started:.0f} s", flush=True)
        fuzz_targets.run_one(data)

    runs = args.runs if args.runs > 0 else -1
    argv = [sys.argv[0], corpus_dir, f"-runs={runs}", "-max_len=1600",
            "-print_final_stats=1", f"-seed={args.seed}"]
    if args.seconds:
        argv.append(f"-max_total_time={int(args.seconds)}")
    print(f"fuzz: atheris (libFuzzer, coverage-guided), corpus {corpus_dir}", flush=True)
    atheris.Setup(argv, one)
    atheris.Fuzz()  # exits the process: libFuzzer prints "Done N runs in T second(s)"
    return 0


def run_hypothesis(args: argparse.Namespace) -> int:
    """Without atheris: hypothesis mutates seeds (byte edits, cuts, splices) and runs each
    input; no coverage feedback, so it finds less per input than libFuzzer."""
    import random

    import fuzz_targets

    seeds = fuzz_targets.corpus()
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    n = 0
    print("fuzz: hypothesis-style mutation loop (atheris is not installed: no coverage "
          "feedback)", flush=True)
    while (args.runs <= 0 or n < args.runs) and (deadline is None or
                                                   time.monotonic() < deadline):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            if op < 0.6 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op < 0.8 and len(data) > 1:
                del data[rng.randrange(1, len(data)):]
            else:
                data += rng.choice(seeds)[1:rng.randint(1, 64)]
        fuzz_targets.run_one(bytes(data))
        n += 1
    print(f"fuzz: {n} inputs, 0 crashes", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1_000_000, help="inputs to run (0: no limit)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long")
    ap.add_argument("--corpus", help="corpus directory (default: a new temporary one)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", choices=("atheris", "hypothesis"), default=None)
    args = ap.parse_args()
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    if engine == "hypothesis":
        return run_hypothesis(args)
    corpus_dir = args.corpus or tempfile.mkdtemp(prefix="layers-fuzz-")
    os.makedirs(corpus_dir, exist_ok=True)
    return run_atheris(args, corpus_dir)


if __name__ == "__main__":
    sys.exit(main())
