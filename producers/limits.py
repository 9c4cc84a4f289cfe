"""The size limits of a notification body, checked at enqueue time."""

from __future__ import annotations

#: Graph takes at most this many recipients in one sendActivityNotificationToRecipients request.
MAX_RECIPIENTS_PER_REQUEST = 100

#: The longest `topic.webUrl` and `topic.value` accepted, in characters. Graph documents no limit; field
#: reports show it refusing a `webUrl` over 1,024 characters, so a sender near this bound should test its
#: own links against Graph. Lower it here to refuse such links at enqueue time.
MAX_URL_LENGTH = 2048

#: `previewText.content` of this many bytes (UTF-8) or more is refused: Teams shows 150 characters, so a
#: body this large is a mistake (a whole document pasted as the preview), not a notification.
MAX_PREVIEW_BYTES = 64 * 1024

#: Teams shows only this many characters of `previewText.content`; a longer one is sent, with a warning.
PREVIEW_SHOWN = 150
