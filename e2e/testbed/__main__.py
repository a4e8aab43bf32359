"""``python -m testbed up|down|status [--dir DIR]``: the commands behind make testbed-up/down."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testbed.controlplane import REPO, ControlPlane, State, TestbedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=REPO / ".testbed", help="state and kubeconfig")
    args = parser.parse_args(argv)
    plane = ControlPlane(args.dir)
    if args.command == "up":
        try:
            state = plane.up()
        except TestbedError as err:
            print(f"testbed: {err}", file=sys.stderr)
            return 1
        print(f"testbed: kube-apiserver at {state.server}")
        print(f"testbed: export KUBECONFIG={state.kubeconfig}")
    elif args.command == "down":
        plane.down()
        print("testbed: stopped")
    else:
        state = State.load(plane.state_file)
        print(f"testbed: running at {state.server}" if state else "testbed: not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
