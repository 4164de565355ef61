"""Names shared by several stages: the columns one stage writes and another reads.

They live here, at the bottom of the package, so that no stage imports another for a constant.
"""

from __future__ import annotations

LABEL = "label"  # the feature table's label column (features -> train, score, quality)
EVENT_DATE = "event_date"  # the feature table's partition column: UTC date of the event time
RUN_DATE = "run_date"  # the predictions table's partition column: the night that scored the row
SOURCE_FILE = "source_file"  # the feature table's column: the landing file the row came from
