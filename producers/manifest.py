"""Checks a body against the Teams app manifest, as Teams would when it renders the notification.

Graph accepts some bodies the manifest cannot render (an undeclared activity type, a missing template
parameter, an icon the activity type does not allow, a `systemDefault` without its `systemDefaultText`);
checking them at enqueue time turns a silent non-delivery into an error the caller sees. Used when
`TEAMS_NOTIFY_APP_MANIFEST` names a manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from producers.errors import ConfigurationError, InvalidNotification
from producers.models import NotificationBody

#: Graph's reserved activity type: free text, not declared in the manifest.
SYSTEM_DEFAULT = "systemDefault"
#: The template parameter holding a `systemDefault` notification's free text (Microsoft's example 8 of
#: "Send activity feed notifications to users in Microsoft Teams"): without it Teams has nothing to show.
SYSTEM_DEFAULT_TEXT = "systemDefaultText"
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
#: Template parameters Teams fills in itself.
_IMPLICIT = {"actor"}


@dataclass(frozen=True)
class ActivityType:
    """One `activities.activityTypes` entry of the manifest."""

    name: str
    parameters: frozenset[str]
    allowed_icon_ids: frozenset[str] | None


@dataclass(frozen=True)
class Manifest:
    """The parts of a Teams app manifest that decide whether a notification can be rendered."""

    activity_types: dict[str, ActivityType] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Reads a manifest.json; a broken one is a configuration error naming the variable."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            entries = document.get("activities", {}).get("activityTypes", [])
            types = {}
            for entry in entries:
                params = frozenset(_PLACEHOLDER.findall(entry["templateText"])) - _IMPLICIT
                icons = entry.get("allowedIconIds")
                types[entry["type"]] = ActivityType(
                    entry["type"], params, frozenset(icons) if icons is not None else None
                )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"TEAMS_NOTIFY_APP_MANIFEST: cannot read {path}: {exc}") from None
        return cls(types)

    def check(self, body: NotificationBody) -> None:
        """Raises InvalidNotification when Teams could not render this body with this manifest."""
        if body.activity_type == SYSTEM_DEFAULT:
            self._check_system_default(body)
            return
        declared = self.activity_types.get(body.activity_type)
        if declared is None:
            known = ", ".join(sorted(self.activity_types)) or "none"
            raise InvalidNotification(
                f"activityType {body.activity_type!r} is not declared in the app manifest (declared: {known})",
                "activityType",
            )
        given = {p.name for p in body.template_parameters or [] if p.name is not None}
        missing = declared.parameters - given
        if missing:
            raise InvalidNotification(
                f"templateParameters: {body.activity_type!r} needs {', '.join(sorted(missing))}",
                "templateParameters",
            )
        unknown = given - declared.parameters
        if unknown:
            raise InvalidNotification(
                f"templateParameters: {', '.join(sorted(unknown))} not in the template of {body.activity_type!r}",
                "templateParameters",
            )
        if body.icon_id is not None and body.icon_id not in (declared.allowed_icon_ids or ()):
            raise InvalidNotification(
                f"iconId {body.icon_id!r} is not in the allowedIconIds of {body.activity_type!r}", "iconId"
            )

    @staticmethod
    def _check_system_default(body: NotificationBody) -> None:
        """A `systemDefault` notification carries its text in the `systemDefaultText` template parameter."""
        given = {p.name: p.value for p in body.template_parameters or [] if p.name is not None}
        if not (given.get(SYSTEM_DEFAULT_TEXT) or "").strip():
            raise InvalidNotification(
                f"templateParameters: {SYSTEM_DEFAULT!r} needs a {SYSTEM_DEFAULT_TEXT} parameter with the text to show",
                "templateParameters",
            )
