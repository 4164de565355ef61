"""spark-submit entry point for the stack check: `spark-submit jobs/check.py --env cluster ...`.

Same arguments and exit codes as `mlpipe check`: a Delta round trip on the configured storage and an
MLflow run in the experiment `<prefix>/_check`; all logic lives in the `pipeline` package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["check", *sys.argv[1:]]))
