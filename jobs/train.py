"""spark-submit entry point for the 'train' stage: `spark-submit jobs/train.py --pipeline NAME ...`.

Same arguments and exit codes as `mlpipe train`; all logic lives in the `pipeline` package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
