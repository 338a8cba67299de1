"""The HTTP/1.1 adapters' connection pools follow `CGW_WORKER_CONCURRENCY`, and the process's
open-files limit is raised to hold them (a real process started with a low limit)."""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.adapters import build_adapters
from gateway.settings import Secret, Settings


def _settings(tmp_path: Path, concurrency: int) -> Settings:
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    account = tmp_path / "fcm.json"
    account.write_text(
        json.dumps(
            {"type": "service_account", "project_id": "wallet-test", "private_key_id": "kid-1",
             "private_key": rsa_pem.decode(), "client_email": "push@wallet-test.iam.example",
             "token_uri": "https://oauth2.example/token"}
        )
    )  # fmt: skip
    vapid = tmp_path / "vapid.pem"
    vapid.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Settings(
        data_dir=tmp_path, worker_concurrency=concurrency,
        delivery_webhook_url="http://127.0.0.1:9/hook",
        delivery_webhook_secret=Secret("a-webhook-secret-of-32-characters-at-least"),
        fcm_service_account_file=account, webpush_vapid_key_file=vapid,
        webpush_vapid_subject="mailto:push-ops@example.com",
    )  # fmt: skip


def test_each_http1_adapter_keeps_a_connection_per_push_of_a_round(tmp_path: Path) -> None:
    adapters = build_adapters(_settings(tmp_path, 7))
    pools = {name: adapters[name]._http._connections for name in ("webhook", "fcm", "webpush")}  # type: ignore[attr-defined]
    assert pools == {"webhook": 7, "fcm": 7, "webpush": 7}


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= 1024, reason="the hard limit allows no raise above 1024"
)
def test_a_low_open_files_limit_is_raised_to_hold_the_pools(tmp_path: Path) -> None:
    """Three clients of 256 connections, in flight and idle, beside the server's own files: more
    than a soft limit of 1024, which is raised (the hard limit here allows it)."""
    _settings(tmp_path, 256)  # writes the credential files
    script = textwrap.dedent(
        f"""
        import resource
        from pathlib import Path
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        from gateway.adapters import build_adapters
        from gateway.settings import Secret, Settings
        tmp = Path({str(tmp_path)!r})
        build_adapters(Settings(
            data_dir=tmp, worker_concurrency=256, delivery_webhook_url="http://127.0.0.1:9/hook",
            delivery_webhook_secret=Secret("a-webhook-secret-of-32-characters-at-least"),
            fcm_service_account_file=tmp / "fcm.json", webpush_vapid_key_file=tmp / "vapid.pem",
            webpush_vapid_subject="mailto:push-ops@example.com",
        ))
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    soft, hard = (int(v) for v in done.stdout.split())
    assert soft == min(hard, 3 * 2 * 256 + 1024)
    assert soft > 1024


@pytest.mark.parametrize(
    ("lease", "webhook", "warned"),
    [
        (5, True, True),
        (10, True, True),
        (39, True, True),
        (40, True, False),
        (60, True, False),
        (5, False, False),
    ],
)
def test_a_lease_under_twice_a_sends_longest_is_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, lease: int, webhook: bool, warned: bool
) -> None:
    """A send still waiting when its lease ends is claimed and sent again by another worker (a
    fault-injection run saw every hung send go out again each lease, its attempts uncounted). A
    round starts no send with less than a send's longest (20 s) or half its lease left, so under
    40 s a slow send may still outlast it. The file sink alone answers at once: nothing to warn of."""
    hook = {
        "delivery_webhook_url": "http://127.0.0.1:9/hook",
        "delivery_webhook_secret": Secret("a-webhook-secret-of-32-characters-at-least"),
    }
    settings = Settings(data_dir=tmp_path, worker_lease_seconds=lease, **(hook if webhook else {}))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="gateway.adapters"):
        build_adapters(settings)
    said = [r for r in caplog.records if r.getMessage().startswith("CGW_WORKER_LEASE_SECONDS")]
    assert bool(said) is warned
    if warned:
        assert (getattr(said[0], "lease_seconds", None), getattr(said[0], "longest_send_seconds", None)) == (
            lease,
            20.0,
        )
