"""spark-submit entry point for the 'backfill' stage: `spark-submit jobs/backfill.py --pipeline NAME ...`.

Same arguments and exit codes as `mlpipe backfill`; all logic lives in the `pipeline` package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["backfill", *sys.argv[1:]]))
