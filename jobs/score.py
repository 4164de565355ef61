"""spark-submit entry point for the 'score' stage: `spark-submit jobs/score.py --pipeline NAME ...`.

Same arguments and exit codes as `mlpipe score`; all logic lives in the `pipeline` package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
