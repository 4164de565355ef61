"""spark-submit entry point for the 'nightly' stage: `spark-submit jobs/nightly.py --pipeline NAME ...`.

Same arguments and exit codes as `mlpipe nightly`; all logic lives in the `pipeline` package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["nightly", *sys.argv[1:]]))
