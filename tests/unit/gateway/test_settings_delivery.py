"""Delivery providers and the files settings name: a provider is configured fully or not at all,
every file must be one the gateway can use, and numbers and URLs must be usable. A mistake is a
`SettingsError` naming the variable, which the CLI turns into one line and exit status 2, before
anything is created. Never a quiet fallback to the file sink, which reports pushes `delivered`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from clients.delivery import (
    ApnsAdapter,
    DeliveryAdapter,
    FcmAdapter,
    FileSink,
    WebhookAdapter,
    WebPushAdapter,
)
from gateway.adapters import build_adapters
from gateway.settings import Secret, Settings, SettingsError

CLI = str(Path(sys.executable).with_name("consent-gateway"))
HOOK_SECRET = "whsec-never-echo-" + "h" * 16
SUBJECT = "mailto:push-ops@example.com"

PRIVATE = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
PUBLIC = serialization.PublicFormat.SubjectPublicKeyInfo
PEM = serialization.Encoding.PEM


class Files:
    """Credential files in a tmp dir: good ones for each provider, and bad ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        self.ec_private_pem = ec_key.private_bytes(PEM, *PRIVATE).decode()
        self.fcm = self.write(
            "fcm.json",
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "demo-project",
                    "private_key_id": "kid-1",
                    "private_key": rsa_key.private_bytes(PEM, *PRIVATE).decode(),
                    "client_email": "push@demo-project.iam.gserviceaccount.com",
                    "token_uri": "https://oauth2.googleapis.com/token",
                }
            ),
        )
        self.apns = self.write("AuthKey.p8", self.ec_private_pem)
        self.vapid = self.write(
            "vapid.pem", ec.generate_private_key(ec.SECP256R1()).private_bytes(PEM, *PRIVATE).decode()
        )
        self.ed25519_public = self.write(
            "idp-ed25519.pem",
            ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(PEM, PUBLIC).decode(),
        )
        self.p256_public = self.write("idp-p256.pem", ec_key.public_key().public_bytes(PEM, PUBLIC).decode())
        self.rsa_public = self.write("idp-rsa.pem", rsa_key.public_key().public_bytes(PEM, PUBLIC).decode())
        self.rsa_private = self.write("rsa-private.pem", rsa_key.private_bytes(PEM, *PRIVATE).decode())
        self.ec_private = self.apns  # a private key put where a public one belongs
        self.not_pem = self.write("not.pem", "not a pem file at all\n")
        self.empty_json = self.write("empty.json", "{}")
        self.directory = root / "a-directory"
        self.directory.mkdir()
        self.missing = root / "missing.pem"

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("credentials"))


def apns_env(files: Files) -> dict[str, str]:
    return {
        "CGW_APNS_KEY_FILE": str(files.apns),
        "CGW_APNS_KEY_ID": "ABC123DEFG",
        "CGW_APNS_TEAM_ID": "DEF123GHIJ",
        "CGW_APNS_BUNDLE_ID": "com.example.wallet",
    }


def complete_env(files: Files) -> dict[str, str]:
    return {
        **apns_env(files),
        "CGW_FCM_SERVICE_ACCOUNT_FILE": str(files.fcm),
        "CGW_WEBPUSH_VAPID_KEY_FILE": str(files.vapid),
        "CGW_WEBPUSH_VAPID_SUBJECT": SUBJECT,
        "CGW_DELIVERY_WEBHOOK_URL": "https://relay.example.com/push",
        "CGW_DELIVERY_WEBHOOK_SECRET": HOOK_SECRET,
    }


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


def close(adapters: dict[str, DeliveryAdapter]) -> None:
    async def close_all() -> None:
        for adapter in {id(a): a for a in adapters.values()}.values():
            await adapter.aclose()

    asyncio.run(close_all())


# Each case: (label, env given the credential files, the variable the error must name).
Case = tuple[str, Callable[[Files], dict[str, str]], str]

PARTIAL: list[Case] = [
    ("apns without key file", lambda f: without(apns_env(f), "CGW_APNS_KEY_FILE"), "CGW_APNS_KEY_FILE"),
    ("apns without key id", lambda f: without(apns_env(f), "CGW_APNS_KEY_ID"), "CGW_APNS_KEY_ID"),
    ("apns without team id", lambda f: without(apns_env(f), "CGW_APNS_TEAM_ID"), "CGW_APNS_TEAM_ID"),
    ("apns without bundle id", lambda f: without(apns_env(f), "CGW_APNS_BUNDLE_ID"), "CGW_APNS_BUNDLE_ID"),
    ("apns base url alone", lambda f: {"CGW_APNS_BASE_URL": "https://apns.test"}, "CGW_APNS_KEY_FILE"),
    (
        "vapid key without subject",
        lambda f: {"CGW_WEBPUSH_VAPID_KEY_FILE": str(f.vapid)},
        "CGW_WEBPUSH_VAPID_SUBJECT",
    ),
    (
        "vapid subject without key",
        lambda f: {"CGW_WEBPUSH_VAPID_SUBJECT": SUBJECT},
        "CGW_WEBPUSH_VAPID_KEY_FILE",
    ),
    (
        "fcm base url alone",
        lambda f: {"CGW_FCM_BASE_URL": "https://fcm.test"},
        "CGW_FCM_SERVICE_ACCOUNT_FILE",
    ),
]

FILES: list[Case] = [
    (
        "fcm file missing",
        lambda f: {"CGW_FCM_SERVICE_ACCOUNT_FILE": "/nonexistent.json"},
        "CGW_FCM_SERVICE_ACCOUNT_FILE",
    ),
    (
        "fcm file a directory",
        lambda f: {"CGW_FCM_SERVICE_ACCOUNT_FILE": str(f.directory)},
        "CGW_FCM_SERVICE_ACCOUNT_FILE",
    ),
    (
        "fcm file not an account",
        lambda f: {"CGW_FCM_SERVICE_ACCOUNT_FILE": str(f.empty_json)},
        "CGW_FCM_SERVICE_ACCOUNT_FILE",
    ),
    ("apns key missing", lambda f: apns_env(f) | {"CGW_APNS_KEY_FILE": str(f.missing)}, "CGW_APNS_KEY_FILE"),
    (
        "apns key not EC",
        lambda f: apns_env(f) | {"CGW_APNS_KEY_FILE": str(f.rsa_private)},
        "CGW_APNS_KEY_FILE",
    ),
    (
        "vapid key missing",
        lambda f: {"CGW_WEBPUSH_VAPID_KEY_FILE": str(f.missing), "CGW_WEBPUSH_VAPID_SUBJECT": SUBJECT},
        "CGW_WEBPUSH_VAPID_KEY_FILE",
    ),
    (
        "vapid subject a bare address",
        lambda f: {
            "CGW_WEBPUSH_VAPID_KEY_FILE": str(f.vapid),
            "CGW_WEBPUSH_VAPID_SUBJECT": "ops@example.com",
        },
        "CGW_WEBPUSH_VAPID_SUBJECT",
    ),
    ("jwt key not PEM", lambda f: {"CGW_JWT_PUBLIC_KEY_FILE": str(f.not_pem)}, "CGW_JWT_PUBLIC_KEY_FILE"),
    ("jwt key RSA", lambda f: {"CGW_JWT_PUBLIC_KEY_FILE": str(f.rsa_public)}, "CGW_JWT_PUBLIC_KEY_FILE"),
    (
        "jwt key a private key",
        lambda f: {"CGW_JWT_PUBLIC_KEY_FILE": str(f.ec_private)},
        "CGW_JWT_PUBLIC_KEY_FILE",
    ),
    (
        "jwt key a directory",
        lambda f: {"CGW_JWT_PUBLIC_KEY_FILE": str(f.directory)},
        "CGW_JWT_PUBLIC_KEY_FILE",
    ),
]

VALUES: list[Case] = [
    *(
        (f"{name} {raw}", lambda f, name=name, raw=raw: {name: raw}, name)
        for name in ("CGW_DELIVERY_BREAKER_COOLDOWN_SECONDS", "CGW_DELIVERY_BACKOFF_SECONDS")
        for raw in ("inf", "-inf", "nan", "1e400", "Infinity")
    ),
    *(
        (
            f"webhook url {url}",
            lambda f, url=url: {"CGW_DELIVERY_WEBHOOK_URL": url, "CGW_DELIVERY_WEBHOOK_SECRET": HOOK_SECRET},
            "CGW_DELIVERY_WEBHOOK_URL",
        )
        for url in ("https://", "http://", "https://:443/push", "https://user@/push", "https://relay:99999/")
    ),
    ("fcm base url without host", lambda f: {"CGW_FCM_BASE_URL": "https://"}, "CGW_FCM_BASE_URL"),
    ("apns key id blank", lambda f: apns_env(f) | {"CGW_APNS_KEY_ID": "  "}, "CGW_APNS_KEY_ID"),
    # Signed into every provider token, which APNs then refused: a review started with these.
    ("apns key id spaced", lambda f: apns_env(f) | {"CGW_APNS_KEY_ID": "ABC 123DEF"}, "CGW_APNS_KEY_ID"),
    ("apns key id short", lambda f: apns_env(f) | {"CGW_APNS_KEY_ID": "ABC123"}, "CGW_APNS_KEY_ID"),
    ("apns team id tab", lambda f: apns_env(f) | {"CGW_APNS_TEAM_ID": "DEF12\tGHIJ"}, "CGW_APNS_TEAM_ID"),
    (
        "apns bundle spaced",
        lambda f: apns_env(f) | {"CGW_APNS_BUNDLE_ID": "com.example app"},
        "CGW_APNS_BUNDLE_ID",
    ),
    (
        "apns bundle empty part",
        lambda f: apns_env(f) | {"CGW_APNS_BUNDLE_ID": "com..wallet"},
        "CGW_APNS_BUNDLE_ID",
    ),
    *(
        (
            f"vapid subject {subject}",
            lambda f, subject=subject: {
                "CGW_WEBPUSH_VAPID_KEY_FILE": str(f.vapid),
                "CGW_WEBPUSH_VAPID_SUBJECT": subject,
            },
            "CGW_WEBPUSH_VAPID_SUBJECT",
        )
        for subject in (
            "mailto:ops",
            "mailto:@example.com",
            "https://",
            "https://ex ample.com",
            "http://example.com",
        )
    ),
]

ALL = PARTIAL + FILES + VALUES


@pytest.mark.parametrize(
    "subject",
    [
        "https://example.com/contact",
        "https://example.com",
        "mailto:ops@example.com",
        "mailto:ops@intranet",
        "HTTPS://Example.com",
        "MAILTO:ops@example.com",
        "mailto:ops@example.com?subject=push",
    ],
)
def test_every_contact_uri_rfc_8292_allows_is_taken(files: Files, tmp_path: Path, subject: str) -> None:
    """py_vapid's own check refused an https URL with a path and a mail domain with no dot, and
    the message blamed the key file and asked for what was given."""
    env = {"CGW_WEBPUSH_VAPID_KEY_FILE": str(files.vapid), "CGW_WEBPUSH_VAPID_SUBJECT": subject}
    adapters = build_adapters(Settings.from_env(env | {"CGW_DATA_DIR": str(tmp_path)}))
    try:
        assert isinstance(adapters["webpush"], WebPushAdapter)
    finally:
        close(adapters)


@pytest.mark.parametrize(("label", "env", "variable"), ALL, ids=[label for label, _, _ in ALL])
def test_refused_with_the_variable_named(
    files: Files, label: str, env: Callable[[Files], dict[str, str]], variable: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env(files))
    message = str(caught.value)
    assert message.startswith(f"{variable}:"), message
    assert "\n" not in message
    assert HOOK_SECRET not in message
    assert "PRIVATE KEY" not in message
    assert files.ec_private_pem[30:60] not in message


@pytest.mark.parametrize("missing", ["CGW_APNS_KEY_FILE", "CGW_APNS_BUNDLE_ID"])
def test_adapters_refuse_a_partial_provider_even_from_unchecked_settings(
    files: Files, tmp_path: Path, missing: str
) -> None:
    # Settings(...) skips `check`; the file sink must still not stand in for a half-set provider.
    values = {
        "apns_key_file": files.apns,
        "apns_key_id": "ABC123DEFG",
        "apns_team_id": "DEF123GHIJ",
        "apns_bundle_id": "com.example.wallet",
    }
    values.pop(missing.removeprefix("CGW_").lower())
    settings = Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=missing):
        build_adapters(settings)


def test_complete_providers_build_their_real_adapters(files: Files, tmp_path: Path) -> None:
    settings = Settings.from_env(complete_env(files) | {"CGW_DATA_DIR": str(tmp_path)})
    adapters = build_adapters(settings)
    try:
        assert isinstance(adapters["apns"], ApnsAdapter)
        assert isinstance(adapters["fcm"], FcmAdapter)
        assert isinstance(adapters["webpush"], WebPushAdapter)
        assert isinstance(adapters["webhook"], WebhookAdapter)
    finally:
        close(adapters)


@pytest.mark.parametrize("platform", ["apns", "fcm", "webpush"])
def test_each_provider_alone_replaces_only_its_own_sink(files: Files, tmp_path: Path, platform: str) -> None:
    env = {
        "apns": apns_env(files),
        "fcm": {"CGW_FCM_SERVICE_ACCOUNT_FILE": str(files.fcm), "CGW_FCM_BASE_URL": "https://fcm.test"},
        "webpush": {"CGW_WEBPUSH_VAPID_KEY_FILE": str(files.vapid), "CGW_WEBPUSH_VAPID_SUBJECT": SUBJECT},
    }[platform]
    adapters = build_adapters(Settings.from_env(env | {"CGW_DATA_DIR": str(tmp_path)}))
    try:
        assert {name for name, adapter in adapters.items() if not isinstance(adapter, FileSink)} == {platform}
    finally:
        close(adapters)


@pytest.mark.parametrize("key", ["ed25519_public", "p256_public"])
def test_supported_jwt_public_keys_are_accepted(files: Files, key: str) -> None:
    path: Path = getattr(files, key)
    assert Settings.from_env({"CGW_JWT_PUBLIC_KEY_FILE": str(path)}).jwt_public_key_file == path


@pytest.mark.parametrize("raw", ["0.25", "30", "9e2"])
def test_finite_positive_floats_are_accepted(raw: str) -> None:
    settings = Settings.from_env(
        {"CGW_DELIVERY_BACKOFF_SECONDS": raw, "CGW_DELIVERY_BREAKER_COOLDOWN_SECONDS": raw}
    )
    assert settings.delivery_backoff_seconds == settings.delivery_breaker_cooldown_seconds == float(raw)


# -- every *_FILE variable must name a readable file, also for root --------------------------------

# The env that makes each file variable the one checked: its provider's other settings given.
FILE_VARIABLES: dict[str, Callable[[Files, Path], dict[str, str]]] = {
    "CGW_JWT_PUBLIC_KEY_FILE": lambda f, p: {"CGW_JWT_PUBLIC_KEY_FILE": str(p)},
    "CGW_FCM_SERVICE_ACCOUNT_FILE": lambda f, p: {"CGW_FCM_SERVICE_ACCOUNT_FILE": str(p)},
    "CGW_APNS_KEY_FILE": lambda f, p: apns_env(f) | {"CGW_APNS_KEY_FILE": str(p)},
    "CGW_WEBPUSH_VAPID_KEY_FILE": lambda f, p: {
        "CGW_WEBPUSH_VAPID_KEY_FILE": str(p), "CGW_WEBPUSH_VAPID_SUBJECT": SUBJECT,
    },
}  # fmt: skip
PROC_MEM = Path("/proc/self/mem")
"""A regular file (`stat` says so) that no one, root included, can read from its start: EIO."""


def _unreadable(kind: str, root: Path, files: Files) -> tuple[Path, str]:
    """A path that is no readable file in a way root meets too, and the error it must give."""
    if kind == "fifo":
        # Opening a FIFO to read it blocks until a writer comes: refused before any open.
        os.mkfifo(root / "key.fifo")
        return root / "key.fifo", "not a regular file"
    if kind == "directory":
        return files.directory, "not a regular file"
    if kind == "dangling symlink":
        (root / "key.pem").symlink_to(root / "gone.pem")
        return root / "key.pem", "no such file"
    if kind == "path under a file":
        return files.fcm / "key.pem", "no such file"
    assert kind == "read fails"
    return PROC_MEM, "cannot read /proc/self/mem: Input/output error"


class _FifoWatch:
    """If the check under test ever opened the FIFO, it would block for good: this opens the
    writing end as soon as a reader waits (then closes it, so the reader gets end of file) and
    the test fails on the message instead of hanging."""

    def __init__(self, fifo: Path) -> None:
        self.fifo = fifo
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader waits
                continue
            self.opened = True
            os.close(fd)

    def __enter__(self) -> _FifoWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


UNREADABLE = ["fifo", "directory", "dangling symlink", "path under a file", "read fails"]


@pytest.mark.parametrize("kind", UNREADABLE)
@pytest.mark.parametrize("variable", list(FILE_VARIABLES))
def test_a_path_that_is_no_readable_file_is_refused(
    tmp_path: Path, files: Files, variable: str, kind: str
) -> None:
    """Whoever runs the gateway, root as on CI: none of these can be read as a key file."""
    if kind == "read fails" and not PROC_MEM.is_file():
        pytest.skip("needs Linux /proc")
    path, problem = _unreadable(kind, tmp_path, files)
    env = FILE_VARIABLES[variable](files, path)
    watch = _FifoWatch(path) if kind == "fifo" else None
    with watch or contextlib.nullcontext(), pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == f"{variable}: {problem}" + ("" if kind == "read fails" else f": {path}")
    assert not (watch and watch.opened), "the FIFO was opened"


# Root reads files whatever their mode (as CI runs): there the check runs without the capabilities
# that pass it.
AS_AN_OWNER = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []
)
_SETTINGS_OF = """
import sys
from gateway.settings import Settings, SettingsError
try:
    Settings.from_env({"CGW_JWT_PUBLIC_KEY_FILE": sys.argv[1]})
except SettingsError as refused:
    print(refused)
"""


@pytest.mark.skipif(bool(AS_AN_OWNER) and shutil.which("setpriv") is None, reason="needs setpriv as root")
def test_a_file_without_read_permission_is_refused(tmp_path: Path, files: Files) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(files.ed25519_public.read_bytes())
    locked.chmod(0)
    argv = [*AS_AN_OWNER, sys.executable, "-c", _SETTINGS_OF, str(locked)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == f"CGW_JWT_PUBLIC_KEY_FILE: cannot read {locked}: Permission denied\n"


# -- the CLI: exit 2, one line naming the variable, nothing echoed, nothing created ---------------


def _run_all(
    commands: list[tuple[str, list[str], dict[str, str]]], timeout: float
) -> dict[str, tuple[int | None, str, str]]:
    """Runs the commands side by side; one still running after `timeout` is killed (None)."""
    running = {
        label: subprocess.Popen(
            [CLI, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for label, argv, env in commands
    }
    done: dict[str, tuple[int | None, str, str]] = {}
    for label, process in running.items():
        try:
            out, err = process.communicate(timeout=timeout)
            done[label] = (process.returncode, out, err)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            done[label] = (None, out, err)
    return done


# Every case above runs through Settings; these also run through the CLI, one of each kind. The
# worker is where a half-set provider used to start and mark pushes delivered; `keys create`
# builds the same runtime and used to crash on a missing credential file.
WORKER_CASES = {
    "apns without key file",
    "vapid key without subject",
    "fcm base url alone",
    "fcm file missing",
    "fcm file not an account",
    "vapid subject a bare address",
    "jwt key not PEM",
    "jwt key a private key",
    "CGW_DELIVERY_BACKOFF_SECONDS inf",
    "CGW_DELIVERY_BREAKER_COOLDOWN_SECONDS 1e400",
    "webhook url https://",
}
KEYS_CASES = {"fcm file missing", "fcm file not an account", "apns key not EC"}


@pytest.mark.parametrize(
    ("command", "labels"),
    [(["worker"], WORKER_CASES), (["keys", "create", "--name", "ops", "--scope", "admin"], KEYS_CASES)],
    ids=["worker", "keys create"],
)
def test_cli_refuses_bad_delivery_settings_with_one_line(
    files: Files, tmp_path: Path, command: list[str], labels: set[str]
) -> None:
    cases = [case for case in ALL if case[0] in labels]
    assert len(cases) == len(labels)
    commands = [
        (label, command, env(files) | {"CGW_DATA_DIR": str(tmp_path / f"data-{n}")})
        for n, (label, env, _) in enumerate(cases)
    ]
    results = _run_all(commands, timeout=20)
    problems = []
    for n, (label, _, variable) in enumerate(cases):
        status, out, err = results[label]
        lines = err.splitlines()
        if status != 2:
            tail = lines[-1] if lines else ""
            problems.append(f"{label}: exit {'(still running)' if status is None else status}, {tail!r}")
        elif len(lines) != 1 or f"configuration error: {variable}:" not in lines[0]:
            problems.append(f"{label}: expected one line naming {variable}, got {err!r}")
        if out:
            problems.append(f"{label}: printed {out!r} on stdout")
        if HOOK_SECRET in err or "PRIVATE KEY" in err or files.ec_private_pem[30:60] in err:
            problems.append(f"{label}: a secret was echoed")
        if (tmp_path / f"data-{n}").exists():
            problems.append(f"{label}: created the data dir before refusing")
    assert not problems, "\n".join(problems)


def test_the_cli_refuses_unreadable_files_at_once_also_as_root(files: Files, tmp_path: Path) -> None:
    """Through `worker`, one line and exit 2 each, within the timeout: a FIFO does not hang it."""
    fifo = tmp_path / "vapid.fifo"
    os.mkfifo(fifo)
    cases = {
        "fifo": ("CGW_WEBPUSH_VAPID_KEY_FILE", FILE_VARIABLES["CGW_WEBPUSH_VAPID_KEY_FILE"](files, fifo)),
        "read fails": ("CGW_FCM_SERVICE_ACCOUNT_FILE", {"CGW_FCM_SERVICE_ACCOUNT_FILE": str(PROC_MEM)}),
    }
    if not PROC_MEM.is_file():
        del cases["read fails"]
    commands = [
        (label, ["worker"], env | {"CGW_DATA_DIR": str(tmp_path / f"data-{label}")})
        for label, (_, env) in cases.items()
    ]
    with _FifoWatch(fifo) as watch:
        results = _run_all(commands, timeout=20)
    assert not watch.opened, "the FIFO was opened"
    for label, (variable, _) in cases.items():
        status, out, err = results[label]
        assert (status, out) == (2, ""), (label, err)
        assert err.count("\n") == 1, err
        assert f"configuration error: {variable}:" in err, err
        assert not (tmp_path / f"data-{label}").exists()


def test_cli_starts_with_every_provider_complete(files: Files, tmp_path: Path) -> None:
    env = complete_env(files) | {"CGW_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "data").mkdir()  # keys create sets a gateway up in an empty dir, never makes one
    done = subprocess.run(
        [CLI, "keys", "create", "--name", "ops", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cgw_")
    assert HOOK_SECRET not in done.stderr


def test_settings_from_direct_construction_keep_working(tmp_path: Path) -> None:
    # The webhook pair as tests and embedders build it: no file, nothing else to check.
    settings = Settings(
        data_dir=tmp_path,
        delivery_webhook_url="https://relay.example.com/push",
        delivery_webhook_secret=Secret(HOOK_SECRET),
    )
    adapters = build_adapters(settings)
    try:
        assert isinstance(adapters["webhook"], WebhookAdapter)
        assert isinstance(adapters["apns"], FileSink)
    finally:
        close(adapters)
