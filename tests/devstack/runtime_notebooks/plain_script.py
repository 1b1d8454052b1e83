"""A spark_python_task file: runs as __main__ with sys.argv = [file, *parameters]."""

import argparse
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--date", required=True)
parser.add_argument("--rows", type=int, default=0)
args = parser.parse_args()
print(f"name={__name__} date={args.date} rows={args.rows} env={os.environ.get('SCORING_ENV')}")
if args.rows < 0:
    sys.exit(3)
