"""Laps of a run: how long each named step took since the previous one."""

from __future__ import annotations

import time


class Laps:
    """`laps("step")` records the seconds since the previous lap (or since creation)."""

    def __init__(self, digits: int = 3) -> None:
        self.durations: dict[str, float] = {}
        self._digits = digits
        self._clock = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.durations[name] = round(now - self._clock, self._digits)
        self._clock = now
