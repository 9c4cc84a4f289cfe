"""The building blocks of the Graph body models: their base model, which writes Graph's wire form, the
`@odata.type` field, and the checked string types of URLs and ids."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr
from pydantic.alias_generators import to_camel

from producers import ids
from producers.limits import MAX_URL_LENGTH

#: The namespace of Graph's types, as `@odata.type` names them.
ODATA_PREFIX = "microsoft.graph."


def check_https_url(value: str) -> str:
    """The value, if it is an https URL with a host; a ValueError otherwise."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"{value!r} is not an https URL")
    return value


def check_url_length(value: str) -> str:
    """The value, if it is no longer than `MAX_URL_LENGTH`; a ValueError otherwise."""
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"{len(value):,} characters, more than the {MAX_URL_LENGTH:,} allowed (MAX_URL_LENGTH)")
    return value


HttpsUrl = Annotated[StrictStr, AfterValidator(check_url_length), AfterValidator(check_https_url)]
UserId = Annotated[StrictStr, AfterValidator(ids.check_user_id)]
TeamId = Annotated[StrictStr, AfterValidator(ids.check_team_id)]
ChatId = Annotated[StrictStr, AfterValidator(ids.check_chat_id)]
ChannelId = Annotated[StrictStr, AfterValidator(ids.check_channel_id)]


class GraphModel(BaseModel):
    """Graph's wire form: camelCase names, unknown fields refused, only what was given written back."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, extra="forbid", frozen=True
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict Graph receives."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def odata_type_field(name: str, **kwargs: Any) -> Any:
    """An `@odata.type` field of the given Graph type, with or without OData's leading `#`."""
    full = ODATA_PREFIX + name
    return Field(alias="@odata.type", pattern=rf"^#?{full.replace('.', '[.]')}$", **kwargs)
