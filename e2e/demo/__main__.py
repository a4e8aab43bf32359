"""``python -m demo run|down`` (what `make demo` and `make demo-down` call).

DEMO_MINUTES (default 5) sets the real length of the simulated day; DEMO_KEEP=1 keeps the
cluster running afterwards to explore with kubectl (the KUBECONFIG path is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from testbed.controlplane import REPO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("command", choices=["run", "down"])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("DEMO_MINUTES", "5")))
    parser.add_argument("--keep", action="store_true", default=os.environ.get("DEMO_KEEP") == "1")
    parser.add_argument("--dir", type=Path, default=REPO / ".demo")
    args = parser.parse_args(argv)
    if args.command == "down":
        from demo.stack import Stack

        Stack(args.dir).down()
        print("demo: stopped")
        return 0
    from demo.run import main as run

    try:
        run(args.minutes, args.keep, args.dir / "summary.json")
    except KeyboardInterrupt:
        print("demo: interrupted; everything it started is stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
