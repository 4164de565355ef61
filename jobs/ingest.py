"""spark-submit entry point for the 'ingest' stage: `spark-submit jobs/ingest.py --pipeline NAME ...`.

Same arguments and exit codes as `mlpipe ingest`; all logic lives in the `pipeline` package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
