"""The exception tree of teams-notify, rooted in one class so callers can catch everything we raise.

TeamsNotifyError
├── InvalidNotification (also ValueError): a body or id Graph would refuse; nothing was enqueued
├── BrokerUnavailable: Redis could not be reached; nothing was enqueued
├── UnknownJob (also LookupError): no job has that id
└── ConfigurationError: a setting is missing or malformed (the worker's errors extend the tree)
"""

from __future__ import annotations


class TeamsNotifyError(Exception):
    """The root of every error teams-notify raises on purpose."""


class InvalidNotification(TeamsNotifyError, ValueError):
    """A notification body or id that Graph would refuse; the message names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BrokerUnavailable(TeamsNotifyError):
    """Redis could not be reached, so nothing was enqueued."""


class UnknownJob(TeamsNotifyError, LookupError):
    """No job has this id."""


class ConfigurationError(TeamsNotifyError):
    """A setting is missing or malformed; the message names the environment variable."""
