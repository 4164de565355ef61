"""The run date a command uses when none is given: one rule for every way the pipeline is run."""

from __future__ import annotations

import datetime as dt


def default_run_date(now: dt.datetime | None = None) -> dt.date:
    """Yesterday in UTC: the last day that has ended, the one a scheduled night processes.

    The cron wrapper (`scripts/nightly.sh`) passes the same date, and the Airflow DAG's `{{ ds }}`
    on its daily data-interval timetable is that date too.
    """
    moment = now or dt.datetime.now(dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)
