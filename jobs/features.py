"""spark-submit entry point for the 'features' stage: `spark-submit jobs/features.py --pipeline NAME ...`.

Same arguments and exit codes as `mlpipe features`; all logic lives in the `pipeline` package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
