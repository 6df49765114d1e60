"""The program's first code, kept free of imports: Ctrl-C while the command line loads still ends with one line
and exit code 130 instead of a traceback."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Load the command line and run it; an interrupt during start-up is reported like one during a command."""
    try:
        from gpicl_bench.cli import main as run_cli
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("gpicl-bench: interrupted", file=sys.stderr)
        sys.exit(130)
    run_cli()
