"""The devstack command line: ``python -m devstack demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="Local stand-ins for the cloud.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the end-to-end example on a devstack it starts and stops")
    demo.add_argument("--state-dir", type=Path, default=None, help="where state and logs go (default .devstack/)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from devstack.demo import default_state_dir, run_demo

        return run_demo(args.state_dir or default_state_dir())
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
