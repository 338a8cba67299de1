"""`consent-gateway audit verify --export FILE` on the files auditors actually hold.

An export is checked offline with the published JWK set, as an auditor outside the operator
does; what is wrong with the export file must be reported as the export file's problem, never
as the JWK set's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

Client = TestClient[Litestar]
CLI = Path(sys.executable).with_name("consent-gateway")

pytestmark = pytest.mark.slow


@pytest.fixture
def jwks(client: Client, as_user: Callable[[str], Headers], clock: FakeClock, tmp_path: Path) -> Path:
    """The published JWK set, after a few consent events so that an export has something in it."""
    for i in range(3):
        answer = client.put(
            "/v1/me/consents/marketing",
            headers=as_user("alice"),
            json={"granted": i % 2 == 0, "notice_version": f"v{i}"},
        )
        assert answer.status_code == 200, answer.text
        clock.advance(hours=1)
    path = tmp_path / "jwks.json"
    path.write_text(client.get("/.well-known/jwks.json").text)
    return path


def verify(export: Path, jwks: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """With the JWK set alone, as an auditor: no key store, no data dir."""
    return subprocess.run(
        [str(CLI), "audit", "verify", "--export", str(export), "--jwks", str(jwks)],
        env={"CGW_DATA_DIR": str(tmp_path / "no-data-dir")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused_naming_export(done: subprocess.CompletedProcess[str], export: Path) -> str:
    """Exit 2 and one line, naming the export file and not the JWK set; returns the line."""
    assert (done.returncode, done.stdout) == (2, ""), done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert f"--export {export}: " in lines[0]
    assert "JWK" not in lines[0]
    return lines[0]


def test_an_export_file_that_is_not_text_is_named_not_the_jwks(jwks: Path, tmp_path: Path) -> None:
    export = tmp_path / "export.jws"
    export.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe a picture, saved under the wrong name")
    line = refused_naming_export(verify(export, jwks, tmp_path), export)
    assert str(jwks) not in line


def test_the_apis_json_answer_saved_as_a_file_verifies(
    client: Client, as_key: Callable[..., Headers], jwks: Path, tmp_path: Path
) -> None:
    """`{"jws": "..."}`, as `GET /v1/audit/export` answers and the dashboard saved it (pretty
    printed) before it saved the bare JWS: such files are in auditors' hands."""
    answer = client.get("/v1/audit/export", headers=as_key("audit:read")).json()
    export = tmp_path / "audit-export.json"
    export.write_text(json.dumps(answer, indent=2))
    done = verify(export, jwks, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["checked"] == [
        "signature",
        "checkpoint signature",
        "hash chain",
        "checkpoint root",
    ]


@pytest.mark.parametrize("text", ['{"export": "x"}', '{"jws": 7}', "{not json"])
def test_json_without_an_exports_jws_is_named(jwks: Path, tmp_path: Path, text: str) -> None:
    export = tmp_path / "export.json"
    export.write_text(text)
    refused_naming_export(verify(export, jwks, tmp_path), export)


def test_without_a_key_store_or_a_jwks_the_refusal_points_to_jwks(
    client: Client, as_key: Callable[..., Headers], jwks: Path, tmp_path: Path
) -> None:
    """An auditor away from the server has the export and no key store: the refusal said only
    `no key store at ...`, not that the published key set would do."""
    export = tmp_path / "export.jws"
    export.write_text(client.get("/v1/audit/export", headers=as_key("audit:read")).json()["jws"])
    done = subprocess.run(
        [str(CLI), "audit", "verify", "--export", str(export)],
        env={"CGW_DATA_DIR": str(tmp_path / "no-data-dir")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert "no key store at" in done.stderr
    assert "--jwks FILE" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "no-data-dir").exists()  # nothing created on the way
