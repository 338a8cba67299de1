"""Who is calling: one authentication middleware for every face, and the user-token verifier.

A bearer credential is either an API key (`cgw_<id>_<secret>`: services, auditors, admins,
told apart by scopes) or a user JWT from the wallet's identity service. A user's `sub` is
turned into a `subject_ref` right here and dropped: nothing past this module sees a user_id.
Routes that need no credential say so with `opt={"public": True}`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from gateway.errors import NotAuthenticated
from gateway.settings import Secret, SettingsError
from storage.repositories.api_keys import PREFIX as API_KEY_PREFIX

__all__ = [
    "AuthMiddleware",
    "Principal",
    "UserTokens",
    "auth_middleware",
    "bearer_credential",
    "is_api_key",
    "load_user_token_key",
]

LEEWAY_SECONDS = 30
USER_ID_MAX = 128


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["user", "key"]
    subject_ref: str | None = None
    # The token's `sub`, for the checks that keep it out of what is stored in clear (a notice
    # version); never stored or logged itself, and hidden from repr.
    user_id: Secret | None = None
    key_id: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def actor(self) -> str:
        """How the ledger and the access log name this caller."""
        return "user" if self.kind == "user" else f"key:{self.key_id}"


class UserTokens:
    """Verifies user JWTs: HS256 with a secret, or EdDSA/ES256 with a public key — never both,
    never `none`, and the algorithm comes from our configuration, not from the token."""

    def __init__(
        self, *, audience: str, secret: str | None = None, public_key_file: Path | None = None
    ) -> None:
        self.audience = audience
        self._secret = secret
        self._key: Any
        if public_key_file is not None:
            try:
                self._key, algorithm = load_user_token_key(public_key_file.read_bytes())
            except (OSError, ValueError) as exc:
                raise SettingsError(f"CGW_JWT_PUBLIC_KEY_FILE: {exc}") from None
            self._algorithms = [algorithm]
        elif secret is not None:
            self._algorithms = ["HS256"]
            self._key = secret
        else:
            raise ValueError("a JWT secret or public key is required")

    def verify(self, token: str, now: datetime) -> str:
        """The user_id (`sub`) of a valid token at `now`; raises NotAuthenticated otherwise.

        `now` is the gateway's injected clock's (the middleware passes it), the clock `mint`
        stamps with: PyJWT's own checks of `exp`, `nbf` and `iat` read the wall clock, so they
        are off and `_check_times` does them against `now`, with the same leeway and the same
        errors."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": ["exp", "sub", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
            _check_times(claims, now.timestamp())
        except jwt.PyJWTError:
            raise NotAuthenticated("invalid or expired user token", "Authorization") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 1 <= len(sub) <= USER_ID_MAX or not _encodable(sub):
            raise NotAuthenticated("user token `sub` must be a user id of 1-128 characters", "Authorization")
        return sub

    def mint(self, user_id: str, now: datetime, ttl: timedelta = timedelta(hours=12)) -> str:
        """A dev token; only possible when we hold the HS256 secret."""
        if self._secret is None:
            raise ValueError("tokens can only be minted with an HS256 secret")
        claims = {
            "sub": user_id,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")


def _check_times(claims: dict[str, Any], now: float) -> None:
    """PyJWT's checks of `exp`, `nbf` and `iat` (`jwt.api_jwt.PyJWT._validate_exp`, `_nbf`,
    `_iat`, 2.x) made against `now`, raising the errors PyJWT raises: `exp` is required (`decode`
    saw to it); a token issued or valid only later than `now` (beyond the leeway) is refused."""
    if _time_claim(claims, "exp", "Expiration Time") <= now - LEEWAY_SECONDS:
        raise jwt.ExpiredSignatureError("Signature has expired")
    if "nbf" in claims and _time_claim(claims, "nbf", "Not Before") > now + LEEWAY_SECONDS:
        raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
    iat_malformed = jwt.InvalidIssuedAtError
    if "iat" in claims and _time_claim(claims, "iat", "Issued At", iat_malformed) > now + LEEWAY_SECONDS:
        raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")


def _time_claim(
    claims: dict[str, Any], name: str, title: str, malformed: type[jwt.PyJWTError] = jwt.DecodeError
) -> int:
    """The claim as PyJWT reads it, or PyJWT's error for one that is not an integer."""
    try:
        return int(claims[name])
    except (ValueError, TypeError, OverflowError):
        raise malformed(f"{title} claim ({name}) must be an integer.") from None


def load_user_token_key(pem: bytes) -> tuple[Ed25519PublicKey | EllipticCurvePublicKey, str]:
    """The identity service's public key and the one algorithm it verifies: an Ed25519 key
    (EdDSA) or a P-256 key (ES256), in PEM. Anything else is a ValueError that never quotes the
    file, which may be a private key put in the wrong place."""
    try:
        key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key") from None
    if isinstance(key, Ed25519PublicKey):
        return key, "EdDSA"
    if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        return key, "ES256"
    raise ValueError("expected an Ed25519 or P-256 public key")


def _encodable(text: str) -> bool:
    """False for strings JSON allows but UTF-8 does not (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


CREDENTIAL_MAX = 8192
"""Our API keys are 64 characters and a user token a few hundred. PyJWT checks a token's characters
one by one in Python, on the event loop and before its signature: an unsigned megabyte would
hold up every request for a tenth of a second, so longer credentials are refused unread."""


def bearer_credential(headers: list[str]) -> str:
    """The credential the `Authorization` headers present; `NotAuthenticated` when they present
    none, one too long to read, or more than one: the first was taken and the others ignored,
    where a proxy that keeps the last would see another caller than the gateway does."""
    if len(headers) > 1:
        raise NotAuthenticated("one Authorization header is allowed, not several", "Authorization")
    scheme, _, credential = (headers[0] if headers else "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise NotAuthenticated("a bearer credential is required", "Authorization")
    if len(credential) > CREDENTIAL_MAX:
        raise NotAuthenticated(f"a bearer credential is at most {CREDENTIAL_MAX} characters", "Authorization")
    return credential


def is_api_key(credential: str) -> bool:
    """An API key, not a user token: the two share the header."""
    return credential.startswith(API_KEY_PREFIX)


class AuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        credential = bearer_credential(connection.headers.getall("authorization", []))
        runtime = connection.app.state.runtime
        if is_api_key(credential):
            key = runtime.api_keys.verify(credential)
            if key is None:
                raise NotAuthenticated("unknown or revoked API key", "Authorization")
            principal = Principal(kind="key", key_id=key.key_id, scopes=frozenset(key.scopes))
        else:
            user_id = runtime.user_tokens.verify(credential, runtime.clock())
            principal = Principal(
                kind="user",
                subject_ref=runtime.store.pseudonyms.subject_ref(user_id),
                user_id=Secret(user_id),
            )
        return AuthenticationResult(user=principal, auth=None)


auth_middleware = DefineMiddleware(AuthMiddleware, exclude_from_auth_key="public", exclude=["^/schema"])
