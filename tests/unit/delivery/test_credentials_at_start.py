"""Provider credentials that load but could never send are refused at start, naming the variable.

README: "a file the provider cannot use stops the process before it creates anything". An APNs or
VAPID key on a curve other than P-256, and a service account whose token_uri is not an https URL
or whose project_id is no project id, were taken; every send then failed (or, for project_id,
went to another path). Each is a `SettingsError` naming the variable, from `Settings.from_env`
as from the CLI (one line, exit 2, no data dir made).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.settings import Settings, SettingsError

CLI = str(Path(sys.executable).with_name("consent-gateway"))
PKCS8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
RSA_PEM = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(*PKCS8).decode()
P384_PEM = ec.generate_private_key(ec.SECP384R1()).private_bytes(*PKCS8).decode()
P256_PEM = ec.generate_private_key(ec.SECP256R1()).private_bytes(*PKCS8).decode()


def account(**changes: str) -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "wallet-prod",
            "private_key_id": "kid-1",
            "private_key": RSA_PEM,
            "client_email": "push@wallet-prod.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
        | changes
    )


def apns(key_file: Path) -> dict[str, str]:
    return {
        "CGW_APNS_KEY_FILE": str(key_file),
        "CGW_APNS_KEY_ID": "ABC123DEFG",
        "CGW_APNS_TEAM_ID": "DEF123GHIJ",
        "CGW_APNS_BUNDLE_ID": "com.example.wallet",
    }


def vapid(key_file: Path) -> dict[str, str]:
    return {
        "CGW_WEBPUSH_VAPID_KEY_FILE": str(key_file),
        "CGW_WEBPUSH_VAPID_SUBJECT": "mailto:ops@example.com",
    }


def fcm(key_file: Path) -> dict[str, str]:
    return {"CGW_FCM_SERVICE_ACCOUNT_FILE": str(key_file)}


# (label, file text, env naming the file, the variable the error names, what the error says)
CASES: list[tuple[str, str, Callable[[Path], dict[str, str]], str, str]] = [
    ("apns key on P-384", P384_PEM, apns, "CGW_APNS_KEY_FILE", "P-256"),
    ("vapid key on P-384", P384_PEM, vapid, "CGW_WEBPUSH_VAPID_KEY_FILE", "P-256"),
    ("fcm token_uri over http", account(token_uri="http://oauth2.googleapis.com/token"), fcm,
     "CGW_FCM_SERVICE_ACCOUNT_FILE", "token_uri"),
    ("fcm token_uri without host", account(token_uri="https:///token"), fcm,
     "CGW_FCM_SERVICE_ACCOUNT_FILE", "token_uri"),
    ("fcm project_id a path", account(project_id="p/../x"), fcm,
     "CGW_FCM_SERVICE_ACCOUNT_FILE", "project_id"),
]  # fmt: skip
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(("label", "text", "env", "variable", "says"), CASES, ids=IDS)
def test_refused_by_the_settings_check_naming_the_variable(
    tmp_path: Path, label: str, text: str, env: Callable[[Path], dict[str, str]], variable: str, says: str
) -> None:
    key_file = tmp_path / "credential"
    key_file.write_text(text)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env(key_file) | {"CGW_DATA_DIR": str(tmp_path / "data")})
    message = str(caught.value)
    assert message.startswith(variable), message  # the VAPID pair is named together
    assert says in message
    assert "\n" not in message
    assert "PRIVATE KEY" not in message


def test_the_same_files_on_p256_and_a_google_account_start(tmp_path: Path) -> None:
    (tmp_path / "p256.pem").write_text(P256_PEM)
    (tmp_path / "account.json").write_text(account())
    env = apns(tmp_path / "p256.pem") | vapid(tmp_path / "p256.pem") | fcm(tmp_path / "account.json")
    Settings.from_env(env | {"CGW_DATA_DIR": str(tmp_path / "data")})


def test_the_cli_stops_with_one_line_and_creates_nothing(tmp_path: Path) -> None:
    running = {}
    for n, (label, text, env, variable, _) in enumerate(CASES):
        key_file = tmp_path / f"credential-{n}"
        key_file.write_text(text)
        data_dir = tmp_path / f"data-{n}"
        process = subprocess.Popen(
            [CLI, "worker"],
            env=env(key_file) | {"CGW_DATA_DIR": str(data_dir)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running[label] = (process, variable, data_dir)
    problems = []
    for label, (process, variable, data_dir) in running.items():
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        lines = err.splitlines()
        if process.returncode != 2 or len(lines) != 1 or f"configuration error: {variable}" not in lines[0]:
            problems.append(f"{label}: exit {process.returncode}, {err!r}")
        if out or data_dir.exists():
            problems.append(f"{label}: printed {out!r} or created {data_dir}")
    assert not problems, "\n".join(problems)
