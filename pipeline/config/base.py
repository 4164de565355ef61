"""The base of every configuration model."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    """Base for configuration models: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class KeyedError(ValueError):
    """A validation error about a key below the model that raised it (`key` is a dotted path
    relative to that model), so the message can name the file and the exact key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
