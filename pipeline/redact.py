"""One redaction layer between secrets and every place mlpipe writes text.

A value is secret when it came from an environment variable (where credentials live), when its key
is named like one (`*secret*`, `*password*`, `*token*`, `*credential*`, `*key*` in the project's
own sections), or when it is the password of a URI (`scheme://user:password@host`). Loading the
configuration registers those values here (`REDACTOR`); every sink passes its text through
`redact` or `redact_value`: the console and logs (`install`), config snapshots, MLflow params, tags
and artifacts, the audit and quarantine tables, the reports. Spark's own logs and UI are covered
by `SPARK_REDACTION_REGEX` (Spark's default misses Azure account keys and GCS private keys).
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

MASK = "***"
# A key named like a credential. `key` alone counts only as a whole name part (`secret.key`,
# `account.key`, `api_key`), so that `features.key` (the columns of a row key) is not one.
SECRET_NAME = re.compile(
    r"(?i)secret|passw(?:or)?d|token|credential|(?:^|[._-])(?:api|access|account|private)?[._-]?key(?:$|[._-])"
)
# Spark masks the values of configuration keys matching this in its logs, UI and event logs.
SPARK_REDACTION_REGEX = (
    r"(?i)secret|password|token|credential|access[.]?key|account[.]key|private[.]?key|sas"
)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@")
_MIN_SECRET = 4  # shorter values ("1", "yes") would mask unrelated text and protect nothing


def is_secret_name(key: str) -> bool:
    """A configuration key (dotted, or one part) that names a credential."""
    return bool(SECRET_NAME.search(key))


def uri_password(value: str) -> str | None:
    """The password in a URI's user-info, if any."""
    found = _USERINFO.search(value)
    return found.group("password") if found else None


class Redactor:
    """The secret values of this process, and the masking of text that may contain them."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        """Register secret values (from now on masked wherever they appear)."""
        with self._lock:
            fresh = {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET}
            if not fresh - self._values:
                return
            self._values |= fresh
            # Longest first: a secret that contains another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def text(self, text: str) -> str:
        """`text` with every registered secret and every URI password masked."""
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _USERINFO.sub(rf"\g<head>:{MASK}@", text) if "://" in text else text

    def value(self, obj: Any, key: str = "") -> Any:
        """A JSON-like value with secrets masked: strings under secret-named keys entirely."""
        if isinstance(obj, Mapping):
            return {k: self.value(v, f"{key}.{k}" if key else str(k)) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            # Items are not named by the key (`key: [id]` lists column names): text rules only.
            return [self.value(v) if isinstance(v, Mapping) else self._text_of(v) for v in obj]
        if isinstance(obj, str):
            last = key.rsplit(".", 1)[-1] if key else ""
            return MASK if obj and last and is_secret_name(last) else self.text(obj)
        return obj

    def _text_of(self, obj: Any) -> Any:
        return self.text(obj) if isinstance(obj, str) else self.value(obj)


REDACTOR = Redactor()


def redact(text: str) -> str:
    """`text` safe to print, log or store."""
    return REDACTOR.text(text)


def redact_value(obj: Any, key: str = "") -> Any:
    """A mapping, list or string safe to print, log or store (see `Redactor.value`)."""
    return REDACTOR.value(obj, key)


class RedactingStream(io.TextIOBase):
    """A text stream that masks secrets in what is written to it, line by line."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self._pending = ""

    def write(self, s: str) -> int:
        # Whole lines only: a secret split across two writes is still seen whole.
        self._pending += s
        if "\n" in self._pending:
            done, _, self._pending = self._pending.rpartition("\n")
            self.inner.write(redact(done + "\n"))
        return len(s)

    def flush(self) -> None:
        if self._pending:
            self.inner.write(redact(self._pending))
            self._pending = ""
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return self.inner.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's message and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


@contextmanager
def installed() -> Iterator[None]:
    """Console and logging of this process pass through the redactor while inside."""
    out, err = sys.stdout, sys.stderr
    wrapped = not isinstance(out, RedactingStream)
    if wrapped:
        sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    root = logging.getLogger()
    log_filter = RedactingFilter()
    root.addFilter(log_filter)
    handlers = list(root.handlers)
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)
        root.removeFilter(log_filter)
        if wrapped:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = out, err
