"""The one settings object, read once from `CGW_` environment variables and frozen.

Every entry point (server, worker, CLI) calls `Settings.from_env(os.environ)`, so the same
variables mean the same thing everywhere. A bad value is a `SettingsError` naming the
variable, or the flag when the command line gave it; the CLI turns it into one line on stderr
and exit status 2.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from gateway.timezones import is_iana_zone

__all__ = ["Secret", "Settings", "SettingsError"]

LogLevel = Literal["debug", "info", "warning", "error"]


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable.

    Raised with `setting`, the message is that setting's variable and `message`, and the error
    remembers the setting: a value that came from a flag is then reported under the flag the user
    typed (`given_by`), whichever code found the problem — a check here, or a command that could
    not create the data dir long after the settings were read."""

    def __init__(self, message: str, *, setting: str | None = None, flag: bool = False) -> None:
        self.setting, self.problem = setting, message
        if setting is not None:
            message = f"{_flag(setting) if flag else _var(setting)}: {message}"
        super().__init__(message)

    def given_by(self, flags: Mapping[str, str | None]) -> SettingsError:
        """This error naming the flag (`--data-dir`) instead of the variable if `flags`, the
        command line's raw values by setting name, gave its setting."""
        if self.setting is None or flags.get(self.setting) is None:
            return self
        return SettingsError(self.problem, setting=self.setting, flag=True)


class Secret:
    """A string whose repr never shows its value, so settings can be logged safely."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path("data")
    keystore_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: Secret | None = None
    jwt_public_key_file: Path | None = None
    jwt_audience: str = "consent-gateway"
    timezone: str = "UTC"
    controller: str = "Consent Gateway operator"
    jurisdiction: str = "CN"
    delivery_webhook_url: str | None = None
    delivery_webhook_secret: Secret | None = None
    fcm_service_account_file: Path | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"
    apns_key_file: Path | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_bundle_id: str | None = None
    apns_base_url: str = "https://api.push.apple.com"
    webpush_vapid_key_file: Path | None = None
    webpush_vapid_subject: str | None = None
    max_body_bytes: int = 64 * 1024
    body_timeout_seconds: float = 10.0
    max_concurrent_batches: int = 2
    user_writes_per_hour: int = 600
    worker_enabled: bool = True
    worker_concurrency: int = 256
    worker_lease_seconds: int = 60
    worker_metrics_port: int | None = None
    checkpoint_seconds: int = 300
    delivery_max_attempts: int = 12
    delivery_backoff_seconds: float = 1.0
    delivery_breaker_threshold: int = 5
    delivery_breaker_cooldown_seconds: float = 30.0
    log_level: LogLevel = "info"

    @property
    def keystore_path(self) -> Path:
        return self.keystore_file or self.data_dir / "keys.json"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, flags: Mapping[str, str | None] | None = None, **overrides: object
    ) -> Settings:
        """Build settings from a mapping of `CGW_*` variables. `flags` are the command line's raw
        values by setting name ({"port": "70000"}): they win, through the same parser as the
        variable, and an error names the flag (`--port`). `overrides` win too, as given (tests).

        An empty variable is unset, as if absent. An empty flag is refused: `--data-dir ""` was
        typed on purpose, and as a path it would have meant the current directory. A `CGW_`
        variable that is no setting is refused (`_refuse_unknown`)."""
        _refuse_unknown(env)
        values: dict[str, object] = {}
        flags = flags or {}
        for name in _PARSERS:
            raw = env.get(_var(name))
            if raw is not None and raw != "" and flags.get(name) is None:  # a flag given wins unread
                values[name] = _parse(name, raw)
        try:
            for name, raw in flags.items():
                if raw == "":
                    raise SettingsError("must not be empty", setting=name)
                if raw is not None:
                    values[name] = _parse(name, raw)
            values.update({k: v for k, v in overrides.items() if v is not None})
            settings = cls(**values)  # type: ignore[arg-type]
            settings.check()
        except SettingsError as exc:
            raise exc.given_by(flags) from None
        return settings

    def check(self) -> None:
        """Cross-field rules that a single variable's parser cannot see, and the files named."""
        if self.jwt_secret is not None and self.jwt_public_key_file is not None:
            raise SettingsError("CGW_JWT_SECRET and CGW_JWT_PUBLIC_KEY_FILE: set one, not both")
        if self.jwt_secret is not None:
            _check_secret("CGW_JWT_SECRET", self.jwt_secret, "for HS256")
        _check_data_dir(self.data_dir)
        keystore = self.keystore_file
        try:
            if keystore is not None and keystore.exists() and not keystore.is_file():
                raise SettingsError(f"CGW_KEYSTORE_FILE: not a regular file: {keystore}")
        except OSError as exc:
            raise SettingsError(f"CGW_KEYSTORE_FILE: cannot be used: {exc.strerror}") from None
        providers = [provider for provider in _PROVIDERS if self.configured(provider)]
        if self.delivery_webhook_secret is not None and "webhook" in providers:
            _check_secret("CGW_DELIVERY_WEBHOOK_SECRET", self.delivery_webhook_secret, "to sign deliveries")
        paths = {name: path for name in _FILES if (path := getattr(self, name)) is not None}
        read = {name: _read_file(_var(name), path) for name, path in paths.items()}
        # Imported here, not at the top: auth and the delivery adapters own what their files must
        # hold, and they import this module (and Litestar, httpx...) themselves.
        if (public_key := read.get("jwt_public_key_file")) is not None:
            from gateway.auth import load_user_token_key

            try:
                load_user_token_key(public_key)
            except ValueError as exc:
                raise SettingsError(f"CGW_JWT_PUBLIC_KEY_FILE: {exc}") from None
        if providers:
            from gateway.adapters import check_credentials

            check_credentials(self)

    def configured(self, provider: str) -> bool:
        """Whether a delivery provider's variables are all set: False when none is, SettingsError
        naming the first missing one when only some are. A half-configured provider must never
        fall back to the file sink, which reports `delivered` for pushes nobody received."""
        required = _PROVIDERS[provider]
        given = [name for name in required if getattr(self, name) is not None]
        given += [name for name in _PROVIDER_OPTIONS.get(provider, ()) if _is_changed(self, name)]
        if not given:
            return False
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            message = f"{_var(missing[0])}: required when {_var(given[0])} is set"
            if len(required) > 1:
                *first, last = (_var(name) for name in required)
                message += f" (set {', '.join(first)} and {last} together, or none of them)"
            raise SettingsError(message)
        return True


_PROVIDERS: dict[str, tuple[str, ...]] = {
    "webhook": ("delivery_webhook_url", "delivery_webhook_secret"),
    "fcm": ("fcm_service_account_file",),
    "apns": ("apns_key_file", "apns_key_id", "apns_team_id", "apns_bundle_id"),
    "webpush": ("webpush_vapid_key_file", "webpush_vapid_subject"),
}
"""The settings each delivery provider needs, all or none."""

_PROVIDER_OPTIONS: dict[str, tuple[str, ...]] = {
    "fcm": ("fcm_base_url",),
    "apns": ("apns_base_url",),
}
"""Settings with a default that, changed, show the operator meant to use the provider."""

_FILES = ("jwt_public_key_file", "fcm_service_account_file", "apns_key_file", "webpush_vapid_key_file")
"""File-valued settings, each read once by `check` to refuse at start one that cannot be read,
with one line naming its variable; their owners (auth, the adapters) read them again when they
load them. The key store (CGW_KEYSTORE_FILE) is not among them: it is checked when opened, a
`KeyStoreError` that the CLI also turns into one line."""


def _var(name: str) -> str:
    return "CGW_" + name.upper()


def _refuse_unknown(env: Mapping[str, str]) -> None:
    """A `CGW_` variable that is no setting was ignored: `CGW_JWT_SECRET_FILE` (a *_FILE form we
    do not read) left the gateway on dev tokens without a word. Refused, with the setting meant
    when one is close. Empty ones are unset, as for the settings themselves."""
    known = {_var(name) for name in _PARSERS}
    for variable in sorted(env):
        if not variable.startswith("CGW_") or variable in known:
            continue
        if env[variable] == "":
            continue
        hint = ""
        if variable.removesuffix("_FILE") in known:
            hint = f" (there is no _FILE form: set {variable.removesuffix('_FILE')} itself)"
        elif close := difflib.get_close_matches(variable, sorted(known), n=1, cutoff=0.8):
            hint = f" (did you mean {close[0]}?)"
        raise SettingsError(f"{variable}: not a setting{hint}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(name: str, raw: str) -> object:
    """One raw value through its setting's parser; a bad one is a SettingsError for that setting."""
    try:
        return _PARSERS[name](raw)
    except (ValueError, TypeError) as exc:
        raise SettingsError(str(exc), setting=name) from None


def _is_changed(settings: Settings, name: str) -> bool:
    return bool(getattr(settings, name) != getattr(Settings(), name))


def _read_file(var: str, path: Path) -> bytes:
    """The file's bytes; a missing, special or unreadable file is a SettingsError naming `var`
    (a name too long or a directory not searchable raises even in `exists`)."""
    try:
        if not path.exists():
            raise SettingsError(f"{var}: no such file: {path}")
        if not path.is_file():
            raise SettingsError(f"{var}: not a regular file: {path}")
        return path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{var}: cannot read {path}: {exc.strerror}") from None


def _check_data_dir(path: Path) -> None:
    """A directory, or one that can be made: its nearest existing ancestor is a directory. Nothing
    is created here (a refused configuration leaves no trace); the commands that write create it,
    and a failure there is still an error of this setting (`gateway.runtime.ensure_data_dir`). A
    name too long, a directory not searchable or a working directory since removed raise even in
    `exists` and `absolute`: an error of this setting too, not a traceback."""
    try:
        if path.exists():
            if not path.is_dir():
                raise SettingsError(f"not a directory: {path}", setting="data_dir")
            return
        ancestor = next(parent for parent in path.absolute().parents if parent.exists())
    except OSError as exc:
        raise SettingsError(f"cannot be used: {exc.strerror}: {path}", setting="data_dir") from None
    if not ancestor.is_dir():
        raise SettingsError(f"cannot be created, {ancestor} is not a directory: {path}", setting="data_dir")


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host(raw: str) -> str:
    """An IP address or an ASCII host name (RFC 1123 labels), what uvicorn can bind: anything else
    failed only inside uvicorn, as a traceback (UnicodeError for "not..a..host")."""
    try:
        ipaddress.ip_address(raw)
        return raw
    except ValueError:
        pass
    name = raw.removesuffix(".")
    labels = name.split(".")
    # A last label of digits alone names no host (RFC 3696 2): `256.1.1.1` is a bad address, and
    # was looked up as a name only once the banner had been printed and the data dir made.
    if (
        not (0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels))
        or labels[-1].isdigit()
    ):
        raise ValueError(f"not an IP address or a host name: {raw!r}")
    return raw


_DIGITS = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?")


def _integer(raw: str, says: str) -> int:
    """ASCII digits as a number, with the refusal in the setting's words, not Python's ("invalid
    literal for int() with base 10"). Not whatever `int` takes: the space around the digits, `_`
    between them (`1_000`), or digits of other scripts (`٨٠٠٠` was port 8000)."""
    if not _DIGITS.fullmatch(raw):
        raise ValueError(says)
    return int(raw)


def _port(raw: str) -> int:
    port = _integer(raw, "must be a port number from 1 to 65535")
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return port


def _zone(raw: str) -> str:
    if not is_iana_zone(raw):
        raise ValueError(f"unknown IANA time zone: {raw!r}")
    return raw


def _url(raw: str) -> str:
    # The value is never echoed: a webhook URL may carry a token in its path or query.
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    try:
        parts = urlsplit(raw)
        _ = parts.port  # a malformed or out-of-range port raises here
    except ValueError:
        raise ValueError("not a valid URL") from None
    if not parts.hostname or any(c.isspace() for c in raw):
        raise ValueError("must be an http:// or https:// URL with a host name")
    return raw


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _check_secret(variable: str, secret: Secret, use: str) -> None:
    """An HMAC key: 32 characters at least (a short one falls to an offline search from one
    signed message), and none of them edge whitespace, a copy-paste slip that a blank-looking
    secret of spaces would also be."""
    value = secret.reveal()
    if len(value) < 32:
        raise SettingsError(f"{variable}: must be at least 32 characters {use}")
    if value != value.strip():
        raise SettingsError(f"{variable}: must not begin or end with whitespace")


MAX_WORKER_CONCURRENCY = 1024


def _whole(low: int, high: int) -> Callable[[str], int]:
    """A whole number in [low, high]. Every count and duration has a ceiling: past it a typo
    starts a process that fails later, one round at a time (a lease past what a date holds), or
    asks for more sockets than any open-files limit allows."""

    says = f"must be a whole number from {low} to {high}"

    def parse(raw: str) -> int:
        value = _integer(raw, says)
        if not low <= value <= high:
            raise ValueError(says)
        return value

    return parse


def _seconds(high: float) -> Callable[[str], float]:
    """A positive, finite number of seconds, at most `high` (see `_whole`)."""

    says = f"must be a positive number of seconds, at most {high:g}"

    def parse(raw: str) -> float:
        if not _DECIMAL.fullmatch(raw):  # as `_integer`: no space, `_` or other scripts' digits
            raise ValueError(says)
        value = float(raw)
        if not (0 < value <= high):  # also refuses 1e400 (= inf)
            raise ValueError(says)
        return value

    return parse


def _log_level(raw: str) -> str:
    if raw not in {"debug", "info", "warning", "error"}:
        raise ValueError("expected one of debug, info, warning, error")
    return raw


def _nonblank(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be blank")
    return raw


# Controls, format characters, lone surrogates (a byte an environment file held that is not
# UTF-8, which every receipt then failed to encode: 500), private use, unassigned code points
# (noncharacters among them), line and paragraph separators.
_UNSHOWN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _receipt_name(raw: str) -> str:
    """The controller and jurisdiction are signed into every consent receipt and kept in the
    ledger for good: a blank, padded or runaway one, or one with characters no one sees as
    written (`_UNSHOWN`: a newline, a terminal escape, a bidi override), cannot be taken back."""
    if len(raw) > 200:
        raise ValueError("must be at most 200 characters")
    if raw != raw.strip():
        raise ValueError("must not begin or end with whitespace")
    if any(unicodedata.category(c) in _UNSHOWN for c in raw):
        raise ValueError("must not hold control, format, separator, private-use or unassigned characters")
    return _nonblank(raw)


def _audience(raw: str) -> str:
    """Compared exactly with each token's `aud`: a stray space would refuse every user."""
    if raw != raw.strip():
        raise ValueError("must not begin or end with whitespace")
    return _nonblank(raw)


def _vapid_subject(raw: str) -> str:
    from clients.delivery.webpush import vapid_subject_problem  # pywebpush, only when it is set

    if problem := vapid_subject_problem(raw):
        raise ValueError(problem)
    return raw


_APPLE_ID = re.compile(r"[A-Za-z0-9]{10}")
_BUNDLE_ID = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


def _apple_id(raw: str) -> str:
    """An APNs key's Key ID or the Team ID: signed into every provider token (`kid`, `iss`), so
    one with a space or a tab started, and APNs then refused every push `InvalidProviderToken`."""
    if not _APPLE_ID.fullmatch(raw):
        raise ValueError("must be the 10 letters and digits Apple shows for it")
    return raw


def _bundle_id(raw: str) -> str:
    """The app's bundle ID, sent as every push's `apns-topic`."""
    if len(raw) > 155 or not _BUNDLE_ID.fullmatch(raw):
        raise ValueError("must be the app's bundle ID: letters, digits, hyphens and periods between them")
    return raw


_PARSERS: dict[str, Callable[[str], object]] = {
    "data_dir": Path,
    "keystore_file": Path,
    "host": _host,
    "port": _port,
    "jwt_secret": Secret,
    "jwt_public_key_file": Path,
    "jwt_audience": _audience,
    "timezone": _zone,
    "controller": _receipt_name,
    "jurisdiction": _receipt_name,
    "delivery_webhook_url": _url,
    "delivery_webhook_secret": Secret,
    "fcm_service_account_file": Path,
    "fcm_base_url": _url,
    "apns_key_file": Path,
    "apns_key_id": _apple_id,
    "apns_team_id": _apple_id,
    "apns_bundle_id": _bundle_id,
    "apns_base_url": _url,
    "webpush_vapid_key_file": Path,
    "webpush_vapid_subject": _vapid_subject,
    "max_body_bytes": _whole(1, 64 * 1024 * 1024),  # a batch's own limit: no request needs more
    "body_timeout_seconds": _seconds(300),
    "max_concurrent_batches": _whole(1, 64),
    "user_writes_per_hour": _whole(0, 1_000_000),
    "worker_enabled": _bool,
    "worker_concurrency": _whole(1, MAX_WORKER_CONCURRENCY),
    "worker_lease_seconds": _whole(1, 86_400),
    "worker_metrics_port": _port,
    "checkpoint_seconds": _whole(0, 86_400),
    "delivery_max_attempts": _whole(1, 100),
    "delivery_backoff_seconds": _seconds(900),
    "delivery_breaker_threshold": _whole(1, 10_000),
    "delivery_breaker_cooldown_seconds": _seconds(3600),
    "log_level": _log_level,
}
