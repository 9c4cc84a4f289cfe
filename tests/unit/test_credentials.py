"""Certificate credentials: one PEM file with the key and its certificate, a password if encrypted, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from producers.errors import ConfigurationError
from tests.certificates import AppCertificate, shared_certificate
from worker import credentials
from worker.config import load

CLIENT = "a3111f15-658e-457c-9689-fd20fe907330"
PASSWORD = "pem-password-not-real"


@pytest.fixture
def app_certificate() -> AppCertificate:
    return shared_certificate("app")


def test_a_certificate_file_gives_msal_the_key_and_certificate_named_by_sha256(
    app_certificate: AppCertificate, tmp_path: Path
) -> None:
    path = app_certificate.write(tmp_path / "app.pem")

    credential = credentials.from_certificate_file(CLIENT, str(path), None)

    given = credential.msal_credential()
    assert isinstance(given, dict)
    assert given["public_certificate"] == app_certificate.certificate_pem
    assert "PRIVATE KEY" in given["private_key"]
    assert credential.thumbprint_sha256 == app_certificate.certificate.fingerprint(hashes.SHA256()).hex().upper()
    assert credential.thumbprint_sha256 in credential.describe()
    assert "PRIVATE" not in repr(credential)


def test_an_encrypted_key_is_read_with_its_password_and_derives_the_same_cache_key(
    app_certificate: AppCertificate, tmp_path: Path
) -> None:
    plain = credentials.from_certificate_file(CLIENT, str(app_certificate.write(tmp_path / "a.pem")), None)
    encrypted = app_certificate.write(tmp_path / "b.pem", password=PASSWORD)

    credential = credentials.from_certificate_file(CLIENT, str(encrypted), PASSWORD)

    assert credential.key_material() == plain.key_material()  # every worker with the key shares the cache
    assert PASSWORD not in repr(credential)


@pytest.mark.parametrize(
    ("password", "variable", "words"),
    [
        (None, "TEAMS_NOTIFY_CLIENT_CERTIFICATE_PASSWORD", "is encrypted"),
        ("Hunter2-not-it", "TEAMS_NOTIFY_CLIENT_CERTIFICATE_PASSWORD", "does not decrypt"),
    ],
)
def test_a_missing_or_wrong_password_is_named(
    app_certificate: AppCertificate, tmp_path: Path, password: str | None, variable: str, words: str
) -> None:
    path = app_certificate.write(tmp_path / "app.pem", password=PASSWORD)

    with pytest.raises(ConfigurationError, match=variable) as raised:
        credentials.from_certificate_file(CLIENT, str(path), password)

    assert words in str(raised.value)
    assert "Hunter2-not-it" not in str(raised.value)


def test_a_file_without_the_key_or_the_certificate_or_with_another_keys_certificate_is_refused(
    app_certificate: AppCertificate, tmp_path: Path
) -> None:
    key_only = tmp_path / "key.pem"
    key_only.write_text(app_certificate.key_pem)
    certificate_only = tmp_path / "cert.pem"
    certificate_only.write_text(app_certificate.certificate_pem)
    mismatched = tmp_path / "mismatched.pem"
    mismatched.write_text(app_certificate.key_pem + shared_certificate("stranger").certificate_pem)
    cases = {
        key_only: "holds no PEM X.509 certificate",
        certificate_only: "holds no PEM private key",
        mismatched: "no certificate in it goes with its private key",
        tmp_path / "missing.pem": "cannot read it",
    }
    for path, words in cases.items():
        with pytest.raises(ConfigurationError, match="TEAMS_NOTIFY_CLIENT_CERTIFICATE") as raised:
            credentials.from_certificate_file(CLIENT, str(path), None)
        assert words in str(raised.value)
        assert "BEGIN" not in str(raised.value)


def test_a_key_that_is_not_rsa_is_refused(app_certificate: AppCertificate, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "ec.pem"
    path.write_bytes(key + app_certificate.certificate_pem.encode())

    with pytest.raises(ConfigurationError, match="RSA"):
        credentials.from_certificate_file(CLIENT, str(path), None)


def test_a_certificate_replaces_the_secret_in_the_settings(app_certificate: AppCertificate, tmp_path: Path) -> None:
    path = str(app_certificate.write(tmp_path / "app.pem", password=PASSWORD))
    settings = load(
        {
            "TEAMS_NOTIFY_CLIENT_ID": CLIENT,
            "TEAMS_NOTIFY_CLIENT_CERTIFICATE": path,
            "TEAMS_NOTIFY_CLIENT_CERTIFICATE_PASSWORD": PASSWORD,
        }
    )

    assert settings.require_credentials() == (CLIENT, path)
    assert settings.credential().is_certificate
    assert PASSWORD not in repr(settings)
    assert path in repr(settings)


def test_a_certificate_setting_naming_no_file_stops_the_worker_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"TEAMS_NOTIFY_CLIENT_CERTIFICATE=.*no such file"):
        load({"TEAMS_NOTIFY_CLIENT_CERTIFICATE": str(tmp_path / "nowhere.pem")})


def test_without_secret_or_certificate_the_error_names_both() -> None:
    with pytest.raises(ConfigurationError, match=r"TEAMS_NOTIFY_CLIENT_SECRET.*TEAMS_NOTIFY_CLIENT_CERTIFICATE"):
        load({"TEAMS_NOTIFY_CLIENT_ID": CLIENT}).require_credentials()
