"""With TEAMS_NOTIFY_APP_MANIFEST, bodies are checked against the Teams app manifest before enqueueing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis

from producers import InvalidNotification, Notifier
from producers.errors import ConfigurationError
from producers.manifest import Manifest
from producers.models import Endpoint, parse_body
from tests.unit.notification_examples import REFERENCE_EXAMPLES, USER, user_body

SCHEMA = Path(__file__).parents[1] / "schemas" / "MicrosoftTeams.v1.30.schema.json"
SCHEMA_1_17 = Path(__file__).parents[1] / "schemas" / "MicrosoftTeams.v1.17.schema.json"
MANIFEST: dict[str, Any] = {
    "$schema": "https://developer.microsoft.com/json-schemas/teams/v1.30/MicrosoftTeams.schema.json",
    "manifestVersion": "1.30",
    "version": "1.0.0",
    "id": "5e4a1f3d-2a4b-4c9e-9d0f-1a2b3c4d5e6f",
    "developer": {
        "name": "Contoso",
        "websiteUrl": "https://contoso.com",
        "privacyUrl": "https://contoso.com/privacy",
        "termsOfUseUrl": "https://contoso.com/terms",
    },
    "name": {"short": "Approvals"},
    "description": {"short": "Approvals", "full": "Deployment approvals for Contoso"},
    "icons": {"outline": "outline.png", "color": "color.png"},
    "accentColor": "#FFFFFF",
    "webApplicationInfo": {"id": "a3111f15-658e-457c-9689-fd20fe907330", "resource": "https://contosoapp.com"},
    "activities": {
        "activityTypes": [
            {
                "type": "approvalRequired",
                "description": "Deployment requires your approval",
                "templateText": "{actor} created a new deployment {deploymentId}",
                "allowedIconIds": ["deploymentIcon"],
            },
            {"type": "taskCreated", "description": "Task Created Activity", "templateText": "{actor} created a task"},
        ],
        "activityIcons": [{"id": "deploymentIcon", "iconFile": "deploy.png"}],
    },
}


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST))
    return path


def body(**changes: Any) -> dict[str, Any]:
    return {
        **user_body(),
        "activityType": "approvalRequired",
        "templateParameters": [{"name": "deploymentId", "value": "6788662"}],
        **changes,
    }


def system_default(text: str | None) -> dict[str, Any]:
    """A body of the reserved `systemDefault` type, with its text (None: without the parameter)."""
    parameters = [] if text is None else [{"name": "systemDefaultText", "value": text}]
    return body(activityType="systemDefault", templateParameters=parameters)


def test_the_manifest_used_here_is_a_valid_teams_manifest() -> None:
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(MANIFEST)


def test_a_body_the_manifest_can_render_passes(manifest: Path) -> None:
    checked = Manifest.load(manifest)
    checked.check(parse_body(Endpoint.USER, body(iconId="deploymentIcon"), USER))
    checked.check(parse_body(Endpoint.USER, body(activityType="taskCreated", templateParameters=[]), USER))
    checked.check(parse_body(Endpoint.USER, system_default("You need to take a short break"), USER))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"activityType": "undeclared"}, "activityType"),
        ({"templateParameters": []}, "templateParameters"),
        (
            {"templateParameters": [{"name": "deploymentId", "value": "1"}, {"name": "extra", "value": "2"}]},
            "templateParameters",
        ),
        ({"iconId": "notAllowed"}, "iconId"),
        ({"activityType": "taskCreated", "templateParameters": [], "iconId": "deploymentIcon"}, "iconId"),
    ],
)
def test_a_body_the_manifest_cannot_render_is_refused_naming_the_field(
    manifest: Path, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidNotification) as raised:
        Manifest.load(manifest).check(parse_body(Endpoint.USER, body(**changes), USER))
    assert raised.value.field == field
    assert field in str(raised.value)


def test_the_notifier_checks_the_manifest_named_by_the_environment_and_enqueues_nothing(
    manifest: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAMS_NOTIFY_APP_MANIFEST", str(manifest))
    notifier = Notifier(redis_url)
    with pytest.raises(InvalidNotification, match="activityType"):
        notifier.notify_user(USER, body(activityType="undeclared"))
    assert notifier.notify_user(USER, body())


def test_an_unreadable_manifest_is_a_configuration_error_naming_the_variable(tmp_path: Path) -> None:
    broken = tmp_path / "manifest.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigurationError, match="TEAMS_NOTIFY_APP_MANIFEST"):
        Manifest.load(broken)


@pytest.mark.parametrize(
    "parameters",
    [
        None,
        [],
        [{"name": "deploymentId", "value": "6788662"}],
        [{"name": "systemDefaultText", "value": ""}],
        [{"name": "systemDefaultText", "value": "   "}],
        [{"@odata.type": "microsoft.graph.keyValuePair"}],
    ],
    ids=["no parameters", "empty list", "another parameter", "empty text", "blank text", "nameless parameter"],
)
def test_a_system_default_body_without_its_text_is_refused_naming_the_field(
    manifest: Path, parameters: list[dict[str, str]] | None
) -> None:
    changes: dict[str, Any] = {"activityType": "systemDefault", "templateParameters": parameters}

    with pytest.raises(InvalidNotification, match="systemDefaultText") as raised:
        Manifest.load(manifest).check(parse_body(Endpoint.USER, body(**changes), USER))

    assert raised.value.field == "templateParameters"
    assert "templateParameters" in str(raised.value)


def test_microsofts_system_default_example_passes_the_manifest_check(manifest: Path) -> None:
    (example,) = [e for e in REFERENCE_EXAMPLES if e["body"]["activityType"] == "systemDefault"]

    parsed = parse_body(Endpoint(example["endpoint"]), example["body"], example["target"])

    Manifest.load(manifest).check(parsed)


def test_without_a_manifest_a_system_default_body_without_its_text_is_left_to_graph(notifier: Notifier) -> None:
    assert notifier.notify_user(USER, system_default(None))


def test_the_notifier_refuses_a_system_default_body_without_its_text_and_enqueues_nothing(
    manifest: Path, redis_url: str, store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAMS_NOTIFY_APP_MANIFEST", str(manifest))
    notifier = Notifier(redis_url)

    with pytest.raises(InvalidNotification, match="systemDefaultText"):
        notifier.notify_user(USER, system_default(None))

    assert store.dbsize() == 0
    assert notifier.notify_user(USER, system_default("You need to take a short break"))
    notifier.close()


MANIFEST_1_17: dict[str, Any] = {
    **{key: value for key, value in MANIFEST.items() if key != "activities"},
    "$schema": "https://developer.microsoft.com/json-schemas/teams/v1.17/MicrosoftTeams.schema.json",
    "manifestVersion": "1.17",
    "name": {"short": "Approvals", "full": "Contoso deployment approvals"},
    "activities": {"activityTypes": [dict(MANIFEST["activities"]["activityTypes"][1])]},
}


def test_a_1_17_manifest_without_activity_icons_is_valid_and_read(tmp_path: Path) -> None:
    jsonschema.Draft4Validator(json.loads(SCHEMA_1_17.read_text())).validate(MANIFEST_1_17)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST_1_17))

    checked = Manifest.load(path)

    checked.check(parse_body(Endpoint.USER, body(activityType="taskCreated", templateParameters=[]), USER))
    with pytest.raises(InvalidNotification) as raised:
        checked.check(
            parse_body(Endpoint.USER, body(activityType="taskCreated", templateParameters=[], iconId="x"), USER)
        )
    assert raised.value.field == "iconId"
