"""User JWTs and API keys at the edge: every bad credential is a 401 in the one error shape.

Tokens are built here by hand (PyJWT for the well-formed ones, raw base64 + hmac for the
hostile ones) and sent to `GET /v1/me/preferences`, the simplest user route. The gateway
checks `exp`, `nbf` and `iat` against its own clock: the tokens here, stamped with the real
clock, go to the app on the real clock (`shared_client`); `client`'s runs on a fixed day.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.app import create_app
from gateway.auth import CREDENTIAL_MAX, UserTokens
from gateway.runtime import Runtime
from gateway.settings import Secret, Settings

ME = "/v1/me/preferences"
AUD = "consent-gateway"
Headers = dict[str, str]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "auth-user", "aud": AUD, "iat": now, "exp": now + 300}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _raw_token(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _hs256_with(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def _bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


def _assert_401(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 401, "Authorization")
    assert response.headers.get("www-authenticate", "").startswith("Bearer")
    return body


# -- HS256 (the dev secret from the key store) ---------------------------------------------------


@pytest.fixture
def secret(runtime: Runtime) -> str:
    return runtime.keys.jwt_dev_secret


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Litestar]]:
    """One app for the many read-only table cases (an app per case costs a key store each)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("auth") / "data", worker_enabled=False)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def shared_secret(shared_client: TestClient[Litestar]) -> str:
    runtime: Runtime = shared_client.app.state.runtime
    return runtime.keys.jwt_dev_secret


@pytest.fixture(scope="module")
def shared_admin(shared_client: TestClient[Litestar]) -> Headers:
    runtime: Runtime = shared_client.app.state.runtime
    return _bearer(runtime.api_keys.create_sync("shared admin", ("admin",))[1])


def _hs(secret: str, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), secret, algorithm="HS256")


def test_a_valid_token_is_accepted(shared_client: TestClient[Litestar], shared_secret: str) -> None:
    client, secret = shared_client, shared_secret
    response = client.get(ME, headers=_bearer(_hs(secret)))
    assert response.status_code == 200, response.text
    assert response.json()["subject_ref"].startswith("sub_")


@pytest.mark.parametrize(
    ("label", "expired_for", "status"),
    [
        ("within the 30 s leeway", 10, 200),
        ("just inside the leeway", 25, 200),
        ("beyond the leeway", 45, 401),
        ("long expired", 86_400, 401),
    ],
)
def test_expiry_and_leeway(
    shared_client: TestClient[Litestar], shared_secret: str, label: str, expired_for: int, status: int
) -> None:
    client, secret = shared_client, shared_secret
    now = int(time.time())
    response = client.get(ME, headers=_bearer(_hs(secret, iat=now - 3600, exp=now - expired_for)))
    assert response.status_code == status, label
    if status == 401:
        _assert_401(response)


@pytest.mark.parametrize(
    ("label", "make"),
    [
        ("wrong key", lambda s: _hs("another-secret-that-is-long-enough-for-hs256-0123")),
        ("wrong audience", lambda s: _hs(s, aud="someone-else")),
        ("audience list without ours", lambda s: _hs(s, aud=["a", "b"])),
        (
            "no exp",
            lambda s: jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, s, algorithm="HS256"),
        ),
        (
            "no sub",
            lambda s: jwt.encode({k: v for k, v in _claims().items() if k != "sub"}, s, algorithm="HS256"),
        ),
        (
            "no aud",
            lambda s: jwt.encode({k: v for k, v in _claims().items() if k != "aud"}, s, algorithm="HS256"),
        ),
        ("empty sub", lambda s: _hs(s, sub="")),
        ("sub of 129 characters", lambda s: _hs(s, sub="u" * 129)),
        ("sub of 10k characters", lambda s: _hs(s, sub="u" * 10_000)),
        ("numeric sub", lambda s: _hs(s, sub=12345)),
        ("not yet valid (nbf)", lambda s: _hs(s, nbf=int(time.time()) + 3600)),
        ("issued in the future", lambda s: _hs(s, iat=int(time.time()) + 3600)),
        ("exp not a number", lambda s: _hs(s, exp="tomorrow")),
        ("alg none", lambda s: _raw_token({"alg": "none", "typ": "JWT"}, _claims(), lambda _: b"")),
        (
            "alg None, with a signature",
            lambda s: _raw_token({"alg": "None"}, _claims(), _hs256_with(s.encode())),
        ),
        ("HS512 with the right secret", lambda s: jwt.encode(_claims(), s, algorithm="HS512")),
        (
            "HS256 signature over other claims",
            lambda s: _hs(s).rsplit(".", 1)[0][:-2] + "xx." + _hs(s).rsplit(".", 1)[1],
        ),
        ("signature stripped", lambda s: _hs(s).rsplit(".", 1)[0] + "."),
        ("garbage", lambda s: "not-a-token"),
        ("two segments", lambda s: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"),
        ("header not json", lambda s: _b64(b"{") + "." + _b64(b"{}") + "." + _b64(b"sig")),
    ],
)
def test_bad_user_tokens_are_401(
    shared_client: TestClient[Litestar], shared_secret: str, label: str, make: Callable[[str], str]
) -> None:
    _assert_401(shared_client.get(ME, headers=_bearer(make(shared_secret))))


def test_sub_of_exactly_128_characters_is_accepted(
    shared_client: TestClient[Litestar], shared_secret: str
) -> None:
    client, secret = shared_client, shared_secret
    assert client.get(ME, headers=_bearer(_hs(secret, sub="u" * 128))).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Token abc"},
    ],
)
def test_missing_or_non_bearer_credentials_are_401(
    shared_client: TestClient[Litestar], header: Headers
) -> None:
    _assert_401(shared_client.get(ME, headers=header))


def test_an_overlong_credential_is_refused_before_it_is_parsed(
    shared_client: TestClient[Litestar], shared_secret: str
) -> None:
    """A token is parsed on the event loop, character by character, before any signature is
    checked: one of megabytes held up every other request for a second."""
    longest = _hs(shared_secret, pad="x" * ((CREDENTIAL_MAX - 300) * 3 // 4))
    assert CREDENTIAL_MAX - 200 < len(longest) <= CREDENTIAL_MAX
    assert shared_client.get(ME, headers=_bearer(longest)).status_code == 200
    one_more = longest + "x" * (CREDENTIAL_MAX + 1 - len(longest))
    for credential in (one_more, "cgw_" + "k" * CREDENTIAL_MAX, "x" * 1_000_000):
        body = _assert_401(shared_client.get(ME, headers=_bearer(credential)))
        assert f"at most {CREDENTIAL_MAX} characters" in body["detail"]


def test_the_bearer_scheme_is_case_insensitive(
    shared_client: TestClient[Litestar], shared_secret: str
) -> None:
    client, secret = shared_client, shared_secret
    assert client.get(ME, headers={"Authorization": f"bearer {_hs(secret)}"}).status_code == 200


def test_the_refusal_does_not_echo_the_token(client: TestClient[Litestar], secret: str) -> None:
    token = _hs(secret, aud="someone-else", sub="echo-me-user")
    response = client.get(ME, headers=_bearer(token))
    _assert_401(response)
    assert token not in response.text
    assert "echo-me-user" not in response.text


def test_a_configured_secret_replaces_the_dev_secret(data_dir: Path) -> None:
    configured = "configured-hs256-secret-with-enough-length-000"
    app = create_app(Settings(data_dir=data_dir, worker_enabled=False, jwt_secret=Secret(configured)))
    with TestClient(app) as client:
        dev = app.state.runtime.keys.jwt_dev_secret
        assert client.get(ME, headers=_bearer(_hs(configured))).status_code == 200
        _assert_401(client.get(ME, headers=_bearer(_hs(dev))))


def test_a_configured_audience_is_enforced(data_dir: Path) -> None:
    app = create_app(Settings(data_dir=data_dir, worker_enabled=False, jwt_audience="wallet-prod"))
    with TestClient(app) as client:
        dev = app.state.runtime.keys.jwt_dev_secret
        assert client.get(ME, headers=_bearer(_hs(dev, aud="wallet-prod"))).status_code == 200
        _assert_401(client.get(ME, headers=_bearer(_hs(dev))))


# -- public keys: Ed25519 and ES256 --------------------------------------------------------------


def _pem(public: Any) -> bytes:
    pem: bytes = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return pem


@pytest.fixture
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def es_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public_key_client(data_dir: Path, tmp_path: Path, private: Any) -> Iterator[TestClient[Litestar]]:
    pem_file = tmp_path / "idp-public.pem"
    pem_file.write_bytes(_pem(private.public_key()))
    with TestClient(
        create_app(Settings(data_dir=data_dir, worker_enabled=False, jwt_public_key_file=pem_file))
    ) as c:
        yield c


@pytest.fixture
def ed_client(
    data_dir: Path, tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey
) -> Iterator[TestClient[Litestar]]:
    yield from _public_key_client(data_dir, tmp_path, ed_key)


@pytest.fixture
def es_client(
    data_dir: Path, tmp_path: Path, es_key: ec.EllipticCurvePrivateKey
) -> Iterator[TestClient[Litestar]]:
    yield from _public_key_client(data_dir, tmp_path, es_key)


def test_ed25519_config_accepts_eddsa_tokens(
    ed_client: TestClient[Litestar], ed_key: ed25519.Ed25519PrivateKey
) -> None:
    token = jwt.encode(_claims(), ed_key, algorithm="EdDSA")
    assert ed_client.get(ME, headers=_bearer(token)).status_code == 200


def test_ed25519_config_refuses_other_tokens(
    ed_client: TestClient[Litestar], ed_key: ed25519.Ed25519PrivateKey
) -> None:
    runtime: Runtime = ed_client.app.state.runtime
    pem = _pem(ed_key.public_key())
    tokens = {
        "HS256 under the dev secret": _hs(runtime.keys.jwt_dev_secret),
        "HS256 keyed with the public key PEM (alg confusion)": _raw_token(
            {"alg": "HS256", "typ": "JWT"}, _claims(), _hs256_with(pem)
        ),
        "HS256 keyed with the raw public key": _raw_token(
            {"alg": "HS256"},
            _claims(),
            _hs256_with(ed_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
        ),
        "EdDSA from another key": jwt.encode(
            _claims(), ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA"
        ),
        "alg none": _raw_token({"alg": "none"}, _claims(), lambda _: b""),
        "EdDSA, wrong audience": jwt.encode(_claims(aud="x"), ed_key, algorithm="EdDSA"),
        "EdDSA, expired": jwt.encode(_claims(exp=int(time.time()) - 120), ed_key, algorithm="EdDSA"),
    }
    for label, token in tokens.items():
        response = ed_client.get(ME, headers=_bearer(token))
        assert response.status_code == 401, label
        _assert_401(response)


def test_es256_config_works(es_client: TestClient[Litestar], es_key: ec.EllipticCurvePrivateKey) -> None:
    good = jwt.encode(_claims(), es_key, algorithm="ES256")
    assert es_client.get(ME, headers=_bearer(good)).status_code == 200
    pem = _pem(es_key.public_key())
    bad = {
        "HS256 keyed with the PEM": _raw_token({"alg": "HS256"}, _claims(), _hs256_with(pem)),
        "ES256 from another key": jwt.encode(
            _claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"
        ),
        "ES256 without sub": jwt.encode(
            {"aud": AUD, "exp": int(time.time()) + 60}, es_key, algorithm="ES256"
        ),
    }
    for label, token in bad.items():
        response = es_client.get(ME, headers=_bearer(token))
        assert response.status_code == 401, label


@pytest.mark.parametrize(
    ("private", "algorithm"),
    [
        pytest.param(ed25519.Ed25519PrivateKey.generate, "EdDSA", id="Ed25519"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), "ES256", id="ES256"),
    ],
)
def test_a_configured_audience_is_enforced_with_a_public_key(
    data_dir: Path, tmp_path: Path, private: Callable[[], Any], algorithm: str
) -> None:
    """CGW_JWT_AUDIENCE whichever way tokens are checked: a public key's verifier is made apart
    from the secret's."""
    key = private()
    pem_file = tmp_path / "idp-public.pem"
    pem_file.write_bytes(_pem(key.public_key()))
    settings = Settings(
        data_dir=data_dir, worker_enabled=False, jwt_public_key_file=pem_file, jwt_audience="wallet"
    )
    with TestClient(create_app(settings)) as client:
        ours = jwt.encode(_claims(aud="wallet"), key, algorithm=algorithm)
        assert client.get(ME, headers=_bearer(ours)).status_code == 200
        _assert_401(client.get(ME, headers=_bearer(jwt.encode(_claims(), key, algorithm=algorithm))))


@pytest.mark.parametrize(
    "private",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="P-384"),
        pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), id="RSA"),
    ],
)
def test_unsupported_public_keys_are_refused(tmp_path: Path, private: Callable[[], Any]) -> None:
    pem_file = tmp_path / "key.pem"
    pem_file.write_bytes(_pem(private().public_key()))
    with pytest.raises(ValueError, match="CGW_JWT_PUBLIC_KEY_FILE"):
        UserTokens(audience=AUD, public_key_file=pem_file)


def test_tokens_cannot_be_minted_without_the_secret(
    tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    pem_file = tmp_path / "key.pem"
    pem_file.write_bytes(_pem(ed_key.public_key()))
    with pytest.raises(ValueError, match="HS256"):
        UserTokens(audience=AUD, public_key_file=pem_file).mint("x", datetime.now(UTC))


# -- API keys ------------------------------------------------------------------------------------


ADMIN_ROUTE = "/v1/admin/policy"


@pytest.fixture
def admin(as_key: Callable[..., Headers]) -> Headers:
    return as_key("admin")


def _key_parts(headers: Headers) -> tuple[str, str]:
    key = headers["Authorization"].removeprefix("Bearer ")
    key_id, secret = key.removeprefix("cgw_").split("_", 1)
    return key_id, secret


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda kid, sec: "cgw_", id="prefix-only"),
        pytest.param(lambda kid, sec: f"cgw_{kid}", id="no-secret"),
        pytest.param(lambda kid, sec: f"cgw_{kid}_", id="empty-secret"),
        pytest.param(lambda kid, sec: f"cgw__{sec}", id="empty-id"),
        pytest.param(lambda kid, sec: f"cgw_ffffffffffffffff_{sec}", id="unknown-id"),
        pytest.param(lambda kid, sec: f"cgw_{kid}_{sec[:-1]}", id="secret-truncated"),
        pytest.param(lambda kid, sec: f"cgw_{kid}_{sec}x", id="secret-extended"),
        pytest.param(lambda kid, sec: f"cgw_{kid}_{'A' * len(sec)}", id="wrong-secret"),
        pytest.param(lambda kid, sec: f"CGW_{kid}_{sec}", id="prefix-case"),
        # A key id of digits alone (one in ~1,850) has no case to change: its first made a capital.
        pytest.param(
            lambda kid, sec: f"cgw_{kid.upper() if kid.upper() != kid else 'A' + kid[1:]}_{sec}", id="id-case"
        ),
        pytest.param(lambda kid, sec: f"{kid}_{sec}", id="no-prefix"),
    ],
)
def test_bad_api_keys_are_401(
    shared_client: TestClient[Litestar], shared_admin: Headers, make: Callable[[str, str], str]
) -> None:
    client, admin = shared_client, shared_admin
    assert client.get(ADMIN_ROUTE, headers=admin).status_code == 200
    key_id, secret = _key_parts(admin)
    _assert_401(client.get(ADMIN_ROUTE, headers=_bearer(make(key_id, secret))))


def test_a_revoked_key_is_refused_at_once(client: TestClient[Litestar], admin: Headers) -> None:
    created = client.post("/v1/admin/keys", json={"name": "to revoke", "scopes": ["admin"]}, headers=admin)
    assert created.status_code == 201, created.text
    victim = _bearer(created.json()["api_key"])
    assert client.get(ADMIN_ROUTE, headers=victim).status_code == 200  # now in the verification cache
    revoked = client.delete(f"/v1/admin/keys/{created.json()['key_id']}", headers=admin)
    assert revoked.status_code == 204, revoked.text
    _assert_401(client.get(ADMIN_ROUTE, headers=victim))
    assert client.get(ADMIN_ROUTE, headers=admin).status_code == 200  # the revoker is unaffected
    again = client.delete(f"/v1/admin/keys/{created.json()['key_id']}", headers=admin)
    assert_problem(again, 404, "key_id")


def test_the_last_admin_key_cannot_be_revoked(client: TestClient[Litestar], admin: Headers) -> None:
    """Without a live admin key, keys, policy and rotation are out of reach over HTTP."""
    key_id, _ = _key_parts(admin)
    assert_problem(client.delete(f"/v1/admin/keys/{key_id}", headers=admin), 409, "key_id")
    assert client.get(ADMIN_ROUTE, headers=admin).status_code == 200
    created = client.post("/v1/admin/keys", json={"name": "successor", "scopes": ["admin"]}, headers=admin)
    assert created.status_code == 201, created.text
    assert client.delete(f"/v1/admin/keys/{key_id}", headers=admin).status_code == 204
    successor = _bearer(created.json()["api_key"])
    assert_problem(
        client.delete(f"/v1/admin/keys/{created.json()['key_id']}", headers=successor), 409, "key_id"
    )


def test_a_revoked_key_stays_refused_after_a_restart(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        _, admin_key = runtime.api_keys.create_sync("admin", ("admin",))
        victim, victim_key = runtime.api_keys.create_sync("victim", ("admin",))
        revoked = client.delete(f"/v1/admin/keys/{victim.key_id}", headers=_bearer(admin_key))
        assert revoked.status_code == 204
    with TestClient(create_app(settings)) as client:
        _assert_401(client.get(ADMIN_ROUTE, headers=_bearer(victim_key)))
        assert client.get(ADMIN_ROUTE, headers=_bearer(admin_key)).status_code == 200


def test_an_api_key_is_not_a_user_token(client: TestClient[Litestar], admin: Headers) -> None:
    assert_problem(client.get(ME, headers=admin), 403)
