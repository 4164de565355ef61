"""Crash points for recovery tests: the process kills itself with SIGKILL at a named point.

A stage calls `crash_point("after_bronze")` between its commits. When the environment variable
MLPIPE_CRASH_AT names that point, the process dies there exactly as a `kill -9` would, so tests can
prove that a rerun recovers from a crash at every step. Unset (always, outside such tests), it does
nothing.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Die with SIGKILL here when MLPIPE_CRASH_AT equals `name`."""
    if os.environ.get("MLPIPE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
