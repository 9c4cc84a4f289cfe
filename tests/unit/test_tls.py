"""TLS to Redis: the options a rediss:// URL gives, and how a refused certificate is told."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest
import redis
import trustme

from producers import BrokerUnavailable, ConfigurationError
from producers.tls import RedisTLS, VerifiedSSLConnection, certificate_refusal, probe, split_url, unverified_warning
from tests.tls import handshake_server, write_ca

URL = "rediss://:k3y@teams.redis.cache.windows.net:6380/0"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "bundle.pem"
    path.write_text("")
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- what a URL asks for ----------------------------------------------------------------------------------


def test_a_rediss_url_is_verified_against_ssl_cert_file_with_its_host_name_checked(bundle: Path) -> None:
    url, tls = split_url(URL, "V", {"SSL_CERT_FILE": str(bundle)})

    assert url == URL
    assert tls == RedisTLS(ca_certs=str(bundle))
    assert tls.options() == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        "ssl_ca_certs": str(bundle),
    }
    assert tls.client_options()["connection_class"] is VerifiedSSLConnection
    assert tls.opt_outs() == []
    assert unverified_warning("V", "rediss://h:6380/0", tls) is None


def test_without_ssl_cert_file_the_system_store_is_trusted() -> None:
    _, tls = split_url(URL, "V", {})

    assert tls is not None
    assert "ssl_ca_certs" not in tls.options()
    assert tls.options()["ssl_cert_reqs"] == ssl.CERT_REQUIRED


@pytest.mark.parametrize("url", ["redis://:k3y@h:6379/0", "unix:///run/redis.sock?db=1"])
def test_a_url_without_tls_is_left_as_it_is(url: str) -> None:
    assert split_url(url, "V", {}) == (url, None)


def test_the_urls_tls_options_are_taken_out_of_it_and_its_other_options_kept(tmp_path: Path, bundle: Path) -> None:
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.write_text("")
    client_key.write_text("")
    query = f"ssl_ca_certs={tmp_path}/bundle.pem&socket_timeout=3&ssl_certfile={client_cert}&ssl_keyfile={client_key}"

    url, tls = split_url(f"rediss://:p@ss?w#rd@h:6380/2?{query}", "V", {"SSL_CERT_FILE": "/elsewhere.pem"})

    assert url == "rediss://:p@ss?w#rd@h:6380/2?socket_timeout=3"
    assert tls == RedisTLS(ca_certs=str(bundle), certfile=str(client_cert), keyfile=str(client_key))


@pytest.mark.parametrize(
    ("query", "cert_reqs", "check_hostname", "opt_outs"),
    [
        ("ssl_cert_reqs=none", ssl.CERT_NONE, False, ["ssl_cert_reqs=none"]),
        ("ssl_cert_reqs=CERT_OPTIONAL", ssl.CERT_OPTIONAL, True, ["ssl_cert_reqs=optional"]),
        ("ssl_check_hostname=false", ssl.CERT_REQUIRED, False, ["ssl_check_hostname=false"]),
        ("ssl_cert_reqs=required&ssl_check_hostname=true", ssl.CERT_REQUIRED, True, []),
    ],
)
def test_an_explicit_opt_out_is_honoured_and_warned_about(
    query: str, cert_reqs: ssl.VerifyMode, check_hostname: bool, opt_outs: list[str]
) -> None:
    url, tls = split_url(f"{URL}?{query}", "V", {})

    assert url == URL
    assert tls is not None
    assert tls.options()["ssl_cert_reqs"] == cert_reqs
    assert tls.options()["ssl_check_hostname"] is check_hostname
    assert tls.opt_outs() == opt_outs
    warning = unverified_warning("V", "rediss://h:6380/0", tls)
    assert (warning is not None) == bool(opt_outs)
    for item in opt_outs:
        assert warning is not None
        assert item in warning


@pytest.mark.parametrize(
    ("url", "environ", "error"),
    [
        (f"{URL}?ssl_cert_reqs=sometimes", {}, r"^V: ssl_cert_reqs='sometimes' is not required, optional or none$"),
        (f"{URL}?ssl_check_hostname=perhaps", {}, r"^V: ssl_check_hostname='perhaps' is not true or false$"),
        (f"{URL}?ssl_ciphers=ALL", {}, r"^V: unknown TLS option 'ssl_ciphers' \(known: "),
        (f"{URL}?ssl_ca_certs=/no/such.pem", {}, r"^V: ssl_ca_certs='/no/such.pem': no such file$"),
        (URL, {"SSL_CERT_FILE": "/no/such.pem"}, r"^SSL_CERT_FILE='/no/such.pem': no such file \(the CAs that V's"),
        ("redis://:k3y@h:6379/0?ssl_cert_reqs=none", {}, r"^V: ssl_cert_reqs is a TLS option: it needs a rediss://"),
    ],
)
def test_a_bad_tls_setting_is_one_clear_error(url: str, environ: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigurationError, match=error) as caught:
        split_url(url, "V", environ)

    assert "k3y" not in str(caught.value)


# --- a refused certificate ---------------------------------------------------------------------------------


def test_a_certificate_from_a_ca_not_trusted_is_refused_naming_the_server_and_the_bundle(tmp_path: Path) -> None:
    bundle = write_ca(trustme.CA(), tmp_path / "bundle.pem")
    connection_options = RedisTLS(ca_certs=str(bundle)).client_options()

    with handshake_server(trustme.CA(), "localhost") as port:
        pool = redis.ConnectionPool(host="localhost", port=port, socket_connect_timeout=2, **connection_options)
        client = redis.Redis(connection_pool=pool)
        with pytest.raises(redis.ConnectionError) as caught:
            client.ping()
        client.close()

    refusal = certificate_refusal(caught.value)
    assert refusal is not None
    assert refusal.startswith(f"TLS certificate verification failed for Redis at localhost:{port}: ")
    assert f"checked against the CA bundle {bundle}" in refusal
    assert refusal in str(caught.value)


def test_a_certificate_for_another_host_name_is_refused_even_from_a_trusted_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    monkeypatch.setenv("SSL_CERT_FILE", str(write_ca(ca, tmp_path / "bundle.pem")))

    with handshake_server(ca, "redis.elsewhere.example") as port, pytest.raises(BrokerUnavailable) as caught:
        probe(f"rediss://:k3y@localhost:{port}/0", "TEAMS_NOTIFY_REDIS_URL")

    message = str(caught.value)
    assert message.startswith(
        f"TEAMS_NOTIFY_REDIS_URL: TLS certificate verification failed for Redis at localhost:{port}"
    )
    assert "certificate is not valid for 'localhost'" in message
    assert "k3y" not in message


def test_the_start_up_probe_refuses_an_untrusted_server_and_names_the_system_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    with handshake_server(trustme.CA(), "localhost") as port, pytest.raises(BrokerUnavailable) as caught:
        probe(f"rediss://localhost:{port}/0", "TEAMS_NOTIFY_BROKER_URL")

    assert str(caught.value).startswith("TEAMS_NOTIFY_BROKER_URL: TLS certificate verification failed")
    assert "the system CA store (SSL_CERT_FILE is not set)" in str(caught.value)


def test_the_start_up_probe_passes_a_trusted_server_and_leaves_one_that_is_down_to_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    monkeypatch.setenv("SSL_CERT_FILE", str(write_ca(ca, tmp_path / "bundle.pem")))

    with handshake_server(ca, "localhost", "127.0.0.1") as port:
        probe(f"rediss://localhost:{port}/0", "V")  # the handshake passes; it then hangs up: not a refusal
        probe(f"rediss://127.0.0.1:{port}/0", "V")
    started = time.monotonic()
    probe(f"rediss://localhost:{closed_port()}/0", "V")
    probe("redis://localhost:1/0", "V")  # without TLS: nothing to check

    assert time.monotonic() - started < 2


def test_a_refusal_is_found_through_the_errors_that_wrap_it() -> None:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    try:
        try:
            raise error
        except OSError:
            raise redis.ConnectionError("Error 1 connecting to h:6380.") from None
    except redis.ConnectionError as wrapped:
        outer = wrapped

    assert certificate_refusal(outer) is not None
    assert "TLS certificate verification failed" in (certificate_refusal(outer) or "")
    assert certificate_refusal(redis.ConnectionError("Connection refused")) is None
