"""The real thing: `consent-gateway serve` as its own process on a free port, driven over TCP.

The CLI mints a user token and an API key next to the running server (same data dir, same
key store), a consent is given over 127.0.0.1, its receipt JWS is verified with joserfc against
the served JWKS, and the server's log lines are JSON without any raw user_id. The scan of every
face (devices, pushes, complaints, export, erasure, refusals) is test_serve_leak_scan.py.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import KeySet
from support import Server, scan_bytes, serve_process

BANNER_END = "  an API key:"

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = {"CGW_LOG_LEVEL": "info", "CGW_TIMEZONE": "Asia/Shanghai"}
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", settings) as running:
        yield running


def test_serve_consent_receipt_and_logs(server: Server) -> None:
    user_id = f"e2e-user-{secrets.token_hex(8)}@example.com"

    token = server.cli("token", user_id)
    assert token.returncode == 0, token.stderr
    user = {"Authorization": f"Bearer {token.stdout.strip()}"}
    created = server.cli("keys", "create", "--name", "e2e ops", "--scope", "admin")
    assert created.returncode == 0, created.stderr
    api_key = created.stdout.strip()
    assert api_key.startswith("cgw_")
    assert len(created.stdout.strip().splitlines()) == 1  # the key alone on stdout, the rest on stderr

    with httpx.Client(base_url=server.base, timeout=10.0) as http:
        assert http.get("/readyz").status_code == 200
        answer = http.put(
            "/v1/me/consents/marketing", json={"granted": True, "notice_version": "2026-11"}, headers=user
        )
        assert answer.status_code == 200, answer.text
        receipt, compact = answer.json()["receipt"], answer.json()["jws"]
        assert receipt["state"] == "given"
        assert receipt["purpose"]["id"] == "marketing"
        assert receipt["subject_ref"].startswith("sub_")

        jwks = http.get("/.well-known/jwks.json").json()
        keys = KeySet.import_key_set(jwks)
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as superseded by "Ed25519" (RFC 9864); the spec fixes alg EdDSA
            warnings.simplefilter("ignore", SecurityWarning)
            verified = jws.deserialize_compact(compact, keys, algorithms=["EdDSA"])
            forged = compact.rsplit(".", 1)[0] + "." + "A" * 86
            with pytest.raises(BadSignatureError):
                jws.deserialize_compact(forged, keys, algorithms=["EdDSA"])
        assert verified.protected["alg"] == "EdDSA"
        assert verified.protected["kid"] in {k["kid"] for k in jwks["keys"]}
        assert json.loads(verified.payload) == receipt

        assert http.get("/v1/admin/policy", headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
        assert http.get("/v1/me/preferences", headers={"Authorization": "Bearer nope"}).status_code == 401
        # Two credentials, over a real connection (the test client joins repeated headers): the
        # first was taken, so a user's token then an admin key read the preferences, the other
        # order was 403; a proxy keeping the last header would see another caller. Neither now.
        for pair in ((user, api_key), (api_key, user)):
            credentials = [
                ("Authorization", f"Bearer {c}" if isinstance(c, str) else c["Authorization"]) for c in pair
            ]
            two = http.get("/v1/me/preferences", headers=credentials)
            assert (two.status_code, two.json()["detail"]) == (
                401,
                "one Authorization header is allowed, not several",
            )
        preferences = http.get("/v1/me/preferences", headers=user).json()
        assert preferences["consents"]["marketing"]["granted"] is True
        assert preferences["timezone"] == "Asia/Shanghai"  # CGW_TIMEZONE reached the server
        metrics = http.get("/metrics").text

    server.stop()

    log = server.stderr()
    lines = [line for line in log.splitlines() if line.strip()]
    banner_end = next(i for i, line in enumerate(lines) if line.startswith(BANNER_END))
    records = []
    for line in lines[banner_end + 1 :]:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line after the banner is not JSON: {line!r}")
    assert any(
        r.get("logger") == "gateway.http" and r.get("route") == "/v1/me/consents/{purpose}" for r in records
    )
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    for text, where in ((log, "the server's stderr"), (metrics, "/metrics")):
        assert user_id not in text, f"raw user_id in {where}"
        assert api_key not in text, f"API key in {where}"
    assert scan_bytes(server.data_dir, [user_id, api_key.split("_", 2)[2]]) == {}
    assert server.data_dir.joinpath("keys.json").stat().st_mode & 0o777 == 0o600


def test_first_run_says_so_loudly_and_a_second_run_does_not(server: Server, tmp_path: Path) -> None:
    assert "DEVELOPMENT KEYS" in server.stderr()
    server.stop()

    with serve_process(server.data_dir, tmp_path / "second.stderr", server.env) as rerun:
        rerun.stop()
    assert "DEVELOPMENT KEYS" not in rerun.stderr()
