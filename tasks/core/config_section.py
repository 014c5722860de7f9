"""What every section of the dataset config is built on: a strict pydantic model (an unknown key
is an error, not a silently ignored typo), and the error a config that cannot be used raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


class Section(BaseModel):
    """A section of the dataset YAML (`source:`, `hpo:`, ...): unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
