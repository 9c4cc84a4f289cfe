"""What backend apps import to enqueue Teams activity-feed notifications.

Light on purpose: it needs only redis and pydantic, never the worker, msal or httpx.
"""

from producers.errors import (
    BrokerUnavailable,
    ConfigurationError,
    InvalidNotification,
    TeamsNotifyError,
    UnknownJob,
)
from producers.models import (
    ChatNotification,
    Endpoint,
    NotificationBody,
    RecipientsNotification,
    TeamNotification,
    UserNotification,
)
from producers.notifier import Notifier

__all__ = [
    "BrokerUnavailable",
    "ChatNotification",
    "ConfigurationError",
    "Endpoint",
    "InvalidNotification",
    "NotificationBody",
    "Notifier",
    "RecipientsNotification",
    "TeamNotification",
    "TeamsNotifyError",
    "UnknownJob",
    "UserNotification",
]
