"""The peer side of `teams-notify bench --peer msgraph-sdk`: the same sends, made the way a user of
Microsoft's official Python SDK would make them without teams-notify.

That is: `azure.identity.aio.ClientSecretCredential` for the app's token, a `GraphServiceClient` with the
SDK's default middleware (msgraph-core's pipeline, whose RetryHandler honours Retry-After and retries 429,
503 and 504 at most 3 times), and every send started at once under `asyncio.gather` with a
`Semaphore(16)`. The only departures from a stock client are the two a simulator needs: the Entra
authority and the Graph base URL point at it, and TLS trusts its CA.

The SDK is imported inside the functions, so the bench imports without the `bench` extra installed.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

#: The distributions the peer needs, as the `bench` extra pins them.
SDK_DISTRIBUTIONS = ("msgraph-sdk", "azure-identity")
#: The modules that must import for the peer to run.
SDK_MODULES = ("msgraph", "azure.identity.aio", "msgraph_core", "kiota_authentication_azure", "httpx")
#: How many sends a user's script keeps in flight at once.
SDK_CONCURRENCY = 16
#: The scope an app-only Graph client asks for.
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MISSING_SDK = (
    "the msgraph-sdk peer needs Microsoft's Graph SDK: pip install 'teams-notify[bench]' "
    "(msgraph-sdk and azure-identity){detail}"
)


def require_sdk() -> None:
    """Imports the SDK's modules, or raises ImportError naming the `bench` extra."""
    for name in SDK_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(MISSING_SDK.format(detail=f" ({name} cannot be imported: {exc})")) from exc


def sdk_versions() -> dict[str, str]:
    """The installed versions of the SDK's distributions (and msgraph-core, whose retry handler runs)."""
    versions: dict[str, str] = {}
    for name in (*SDK_DISTRIBUTIONS, "msgraph-core", "microsoft-kiota-http"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class Target:
    """Where the SDK is pointed: the simulator's Entra and Graph, its CA, and the app's credentials."""

    authority_host: str
    graph_url: str
    ca_path: Path
    tenant_id: str
    client_id: str
    client_secret: str


@dataclass
class SdkOutcome:
    """What the user's script saw: wall time, and the sends whose `post` raised after the SDK's retries."""

    seconds: float = 0.0
    timed_out: bool = False
    failed_requests: int = 0
    failed_recipients: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def run_sdk(
    target: Target,
    bulks: Sequence[Sequence[str]],
    singles: Sequence[str],
    *,
    concurrency: int = SDK_CONCURRENCY,
    timeout: float | None = None,
) -> SdkOutcome:
    """Sends one bulk request per chunk of `bulks` and one user send per id in `singles`, all at once under
    a semaphore of `concurrency`, and returns what failed. Blocks until every send has ended, or until
    `timeout` seconds have passed (the sends still pending are then cancelled and `timed_out` is set)."""
    require_sdk()
    with warnings.catch_warnings():  # the SDK's generated request builders warn about their own deprecations
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(msgraph|kiota_abstractions)\.")
        return asyncio.run(_send_all(target, bulks, singles, concurrency, timeout))


async def _send_all(
    target: Target, bulks: Sequence[Sequence[str]], singles: Sequence[str], concurrency: int, timeout: float | None
) -> SdkOutcome:
    from azure.identity.aio import ClientSecretCredential  # noqa: PLC0415 - the `bench` extra, imported lazily

    outcome = SdkOutcome()
    credential = ClientSecretCredential(
        target.tenant_id,
        target.client_id,
        target.client_secret,
        authority=target.authority_host,
        disable_instance_discovery=True,
        connection_verify=str(target.ca_path),
    )
    async with credential:
        client, http = _graph_client(credential, target)
        semaphore = asyncio.Semaphore(concurrency)

        async def send(kind: str, recipients: int, post: Any) -> None:
            async with semaphore:
                try:
                    await post()
                except Exception as exc:  # ODataError / APIError once the retries are spent, or a transport error
                    outcome.failed_requests += 1
                    outcome.failed_recipients += recipients
                    outcome.errors[f"{kind}: {describe(exc)}"] += 1

        sends = [send("bulk", len(chunk), _bulk_post(client, chunk)) for chunk in bulks]
        sends += [send("user", 1, _user_post(client, user)) for user in singles]
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*sends), timeout)
        except TimeoutError:
            outcome.timed_out = True
        finally:
            outcome.seconds = time.monotonic() - started
            await http.aclose()
    return outcome


def _graph_client(credential: Any, target: Target) -> tuple[Any, Any]:
    """A GraphServiceClient with the SDK's default middleware, on the simulator's Graph URL and CA."""
    import httpx  # noqa: PLC0415
    from kiota_authentication_azure.azure_identity_authentication_provider import (  # noqa: PLC0415
        AzureIdentityAuthenticationProvider,
    )
    from msgraph.graph_request_adapter import GraphRequestAdapter, options  # noqa: PLC0415 - the SDK's defaults
    from msgraph.graph_service_client import GraphServiceClient  # noqa: PLC0415
    from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]  # noqa: PLC0415 - no py.typed

    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE])
    # The SDK's default client (kiota's timeouts, HTTP/2 offered), trusting the simulator's CA.
    verify = ssl.create_default_context(cafile=str(target.ca_path))
    http = httpx.AsyncClient(timeout=httpx.Timeout(100, connect=30), http2=True, verify=verify)
    http = GraphClientFactory.create_with_default_middleware(client=http, options=options)
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = target.graph_url
    return GraphServiceClient(request_adapter=adapter), http


def _topic_and_preview() -> dict[str, Any]:
    from msgraph.generated.models.item_body import ItemBody  # noqa: PLC0415
    from msgraph.generated.models.teamwork_activity_topic import TeamworkActivityTopic  # noqa: PLC0415
    from msgraph.generated.models.teamwork_activity_topic_source import TeamworkActivityTopicSource  # noqa: PLC0415

    from worker.bench.fleet import notification  # noqa: PLC0415 - the same body the fleet sends

    body = notification()
    return {
        "topic": TeamworkActivityTopic(source=TeamworkActivityTopicSource.EntityUrl, value=body["topic"]["value"]),
        "activity_type": body["activityType"],
        "preview_text": ItemBody(content=body["previewText"]["content"]),
    }


def bulk_body(users: Sequence[str]) -> Any:
    """The SDK's model of a bulk body addressing `users` (the fleet's notification, as `fleet.bulk` builds it)."""
    from msgraph.generated.models.aad_user_notification_recipient import AadUserNotificationRecipient  # noqa: PLC0415
    from msgraph.generated.teamwork.send_activity_notification_to_recipients.send_activity_notification_to_recipients_post_request_body import (  # noqa: E501, PLC0415
        SendActivityNotificationToRecipientsPostRequestBody,
    )

    return SendActivityNotificationToRecipientsPostRequestBody(
        recipients=[AadUserNotificationRecipient(user_id=user) for user in users], **_topic_and_preview()
    )


def user_body() -> Any:
    """The SDK's model of a user send's body (the fleet's `notification()`)."""
    from msgraph.generated.users.item.teamwork.send_activity_notification.send_activity_notification_post_request_body import (  # noqa: E501, PLC0415
        SendActivityNotificationPostRequestBody,
    )

    return SendActivityNotificationPostRequestBody(**_topic_and_preview())


def _bulk_post(client: Any, users: Sequence[str]) -> Any:
    """A coroutine factory for `POST /teamwork/sendActivityNotificationToRecipients` to `users`."""
    body = bulk_body(users)
    return lambda: client.teamwork.send_activity_notification_to_recipients.post(body)


def _user_post(client: Any, user: str) -> Any:
    """A coroutine factory for `POST /users/{user}/teamwork/sendActivityNotification`."""
    body = user_body()
    return lambda: client.users.by_user_id(user).teamwork.send_activity_notification.post(body)


def describe(exc: BaseException) -> str:
    """An exception as one short line: its type and, for Graph's errors, the status and error code."""
    status = getattr(exc, "response_status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if status is not None:
        return f"{type(exc).__name__} {status}" + (f" {code}" if code else "")
    return f"{type(exc).__name__}: {str(exc)[:120]}"
