"""The devstack command line.

python -m devstack up       start MLflow and the dev/staging/prod workspaces in the background
                            (--with-airflow: also Airflow's api-server, scheduler, dag-processor
                            and triggerer on 127.0.0.1:8080; that is `make up`)
python -m devstack status   show what runs
python -m devstack down     stop all of it
python -m devstack demo     the whole lifecycle on a devstack it starts and stops (make demo)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack.airflow_runner import ROOT
from devstack.processes import ProcessStartError

DEFAULT_STATE = ROOT / ".devstack"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE, help="state and logs (default .devstack/)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the devstack in the background")
    up.add_argument("--mlflow-port", type=int, default=5500)
    up.add_argument("--workspace-ports", default="8001,8002,8003", help="dev,staging,prod ports")
    up.add_argument(
        "--entra-port", type=int, default=None, help="Entra ID stand-in port (default: a free one)"
    )
    up.add_argument("--sqlite", action="store_true", help="MLflow on SQLite even when PostgreSQL answers")
    up.add_argument(
        "--fault-rate", type=float, default=0.0, help="fraction of workspace API calls answered 429/503"
    )
    up.add_argument("--cluster-start-seconds", type=float, default=0.0, help="simulated cluster start time")
    up.add_argument(
        "--with-airflow", action="store_true", help="also start Airflow (api-server, scheduler, ...)"
    )
    up.add_argument("--airflow-port", type=int, default=8080, help="Airflow UI/API port (default 8080)")
    down = sub.add_parser("down", help="stop everything `up` started")
    down.add_argument("--purge", action="store_true", help="also delete the state (registry, runs, lake)")
    sub.add_parser("status", help="show what runs")
    demo = sub.add_parser("demo", help="run train -> release -> score on a devstack it starts and stops")
    demo.add_argument("--keep-running", action="store_true", help="leave the devstack up afterwards")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()

    from devstack import stack

    try:
        if args.command == "up":
            ports = [int(p) for p in args.workspace_ports.split(",")]
            if len(ports) != 3:
                parser.error("--workspace-ports takes three ports: dev,staging,prod")
            stack_ports = {"mlflow": args.mlflow_port, "dev": ports[0], "staging": ports[1], "prod": ports[2]}
            if args.entra_port is not None:
                stack_ports["entra"] = args.entra_port
            print(f"devstack up (state in {state_dir})")
            if args.with_airflow:
                from devstack import airflow_stack

                record = airflow_stack.up(
                    state_dir,
                    port=args.airflow_port,
                    ports=stack_ports,
                    use_postgres=False if args.sqlite else None,
                )
                print(f"\nAirflow UI  {record['url']}   login {record['user']} / {record['password']}")
                print("Stop everything with: make down  (python -m devstack down)")
                return 0
            stack.up(
                state_dir,
                ports=stack_ports,
                use_postgres=False if args.sqlite else None,
                fault_rate=args.fault_rate,
                cluster_start_seconds=args.cluster_start_seconds,
            )
            print(
                "Load the connections into a shell with:  set -a; . "
                + str(stack.StackState(state_dir).env_file)
            )
            return 0
        if args.command == "down":
            from devstack import airflow_stack

            airflow_stack.down(state_dir, purge=args.purge)
            return 0
        if args.command == "status":
            from devstack import airflow_stack

            code = stack.print_status(state_dir)
            return max(code, airflow_stack.print_status(state_dir) or 0)
        if args.command == "demo":
            from devstack.demo import run_demo

            return run_demo(state_dir, keep_running=args.keep_running)
    except (stack.StackError, ProcessStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
