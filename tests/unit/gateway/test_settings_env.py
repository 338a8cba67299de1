"""Settings from `CGW_` variables: parsed once, bad values named, secrets never shown; the CLI turns
a bad setting into exactly one line on stderr and exit status 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.settings import Secret, Settings, SettingsError
from storage.store import open_keystore

CLI = str(Path(sys.executable).with_name("consent-gateway"))
GOOD_SECRET = "s" * 32


@pytest.fixture
def pem_file(tmp_path: Path) -> Path:
    path = tmp_path / "idp.pem"
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    path.write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return path


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.jwt_audience == "consent-gateway"
    assert settings.timezone == "UTC"
    assert settings.jwt_secret is None
    assert settings.keystore_path == Path("data") / "keys.json"


def test_every_variable_is_read(tmp_path: Path, pem_file: Path) -> None:
    env = {
        "CGW_DATA_DIR": str(tmp_path / "d"),
        "CGW_KEYSTORE_FILE": str(tmp_path / "k.json"),
        "CGW_HOST": "::1",
        "CGW_PORT": "9001",
        "CGW_JWT_PUBLIC_KEY_FILE": str(pem_file),
        "CGW_JWT_AUDIENCE": "wallet",
        "CGW_TIMEZONE": "Asia/Shanghai",
        "CGW_CONTROLLER": "Example Wallet Ltd",
        "CGW_JURISDICTION": "EU",
        "CGW_DELIVERY_WEBHOOK_URL": "https://relay.example.com/push",
        "CGW_DELIVERY_WEBHOOK_SECRET": "whsec-" + "x" * 32,
        "CGW_MAX_BODY_BYTES": "1024",
        "CGW_WORKER_ENABLED": "off",
        "CGW_WORKER_METRICS_PORT": "9464",
        "CGW_USER_WRITES_PER_HOUR": "60",
        "CGW_LOG_LEVEL": "debug",
        "UNRELATED": "ignored",
    }
    settings = Settings.from_env(env)
    assert settings.data_dir == tmp_path / "d"
    assert settings.keystore_path == tmp_path / "k.json"
    assert (settings.host, settings.port) == ("::1", 9001)
    assert settings.jwt_public_key_file == pem_file
    assert settings.jwt_audience == "wallet"
    assert settings.timezone == "Asia/Shanghai"
    assert (settings.controller, settings.jurisdiction) == ("Example Wallet Ltd", "EU")
    assert settings.delivery_webhook_url == "https://relay.example.com/push"
    assert settings.delivery_webhook_secret == Secret("whsec-" + "x" * 32)
    assert settings.max_body_bytes == 1024
    assert settings.worker_enabled is False
    assert settings.worker_metrics_port == 9464
    assert settings.user_writes_per_hour == 60
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert Settings.from_env({"CGW_WORKER_ENABLED": raw}).worker_enabled is expected


def test_empty_values_mean_unset() -> None:
    assert Settings.from_env({"CGW_PORT": "", "CGW_JWT_SECRET": "", "CGW_TIMEZONE": ""}) == Settings()


def test_overrides_win_and_none_overrides_are_ignored(tmp_path: Path) -> None:
    env = {"CGW_PORT": "9001", "CGW_DATA_DIR": str(tmp_path / "env")}
    settings = Settings.from_env(env, port=9100, data_dir=None, host=None)
    assert settings.port == 9100
    assert settings.data_dir == tmp_path / "env"


def test_flags_win_through_the_variables_parsers(tmp_path: Path) -> None:
    env = {"CGW_PORT": "9000", "CGW_HOST": "127.0.0.1"}
    settings = Settings.from_env(env, flags={"port": "9001", "host": "::1", "data_dir": str(tmp_path)})
    assert (settings.port, settings.host, settings.data_dir) == (9001, "::1", tmp_path)
    assert Settings.from_env(env, flags={"port": None}).port == 9000


def test_a_variable_a_flag_overrides_is_not_read(tmp_path: Path) -> None:
    """`CGW_PORT=abc consent-gateway serve --port 8080` serves on 8080: the flag is what counts."""
    env = {"CGW_PORT": "abc", "CGW_DATA_DIR": "/dev/null"}
    settings = Settings.from_env(env, flags={"port": "8080", "data_dir": str(tmp_path)})
    assert (settings.port, settings.data_dir) == (8080, tmp_path)
    with pytest.raises(SettingsError, match=r"^CGW_PORT:"):
        Settings.from_env(env, flags={"port": None, "data_dir": str(tmp_path)})


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"port": "70000"}, "--port"),
        ({"port": "8080.0"}, "--port"),
        ({"host": "not..a..host"}, "--host"),
        ({"data_dir": "/dev/null"}, "--data-dir"),  # refused by a check, not by the parser
    ],
)
def test_bad_flags_name_the_flag(flags: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({}, flags=flags)
    assert str(caught.value).startswith(named + ":")


def test_overrides_are_checked_too(pem_file: Path) -> None:
    with pytest.raises(SettingsError, match="CGW_JWT_SECRET and CGW_JWT_PUBLIC_KEY_FILE"):
        Settings.from_env({"CGW_JWT_SECRET": GOOD_SECRET}, jwt_public_key_file=pem_file)


BAD: list[tuple[dict[str, str], str]] = [
    ({"CGW_PORT": "abc"}, "CGW_PORT"),
    ({"CGW_PORT": "0"}, "CGW_PORT"),
    ({"CGW_PORT": "65536"}, "CGW_PORT"),
    ({"CGW_PORT": "-1"}, "CGW_PORT"),
    ({"CGW_WORKER_CONCURRENCY": "0"}, "CGW_WORKER_CONCURRENCY"),
    ({"CGW_WORKER_CONCURRENCY": "1025"}, "CGW_WORKER_CONCURRENCY"),  # sockets a typo would ask for
    ({"CGW_TIMEZONE": "Mars/Base"}, "CGW_TIMEZONE"),
    ({"CGW_TIMEZONE": "../../etc/passwd"}, "CGW_TIMEZONE"),
    ({"CGW_JWT_SECRET": "too-short"}, "CGW_JWT_SECRET"),
    ({"CGW_JWT_SECRET": "s" * 31}, "CGW_JWT_SECRET"),
    ({"CGW_JWT_PUBLIC_KEY_FILE": "/nonexistent/idp.pem"}, "CGW_JWT_PUBLIC_KEY_FILE"),
    ({"CGW_JWT_AUDIENCE": "   "}, "CGW_JWT_AUDIENCE"),
    ({"CGW_JWT_AUDIENCE": " consent-gateway"}, "CGW_JWT_AUDIENCE"),  # would refuse every token
    ({"CGW_JWT_SECRET": " " * 40}, "CGW_JWT_SECRET"),
    ({"CGW_JWT_SECRET": "s" * 40 + "\n"}, "CGW_JWT_SECRET"),
    # Past what a date holds, or any sane wait: accepted, these failed every round later.
    ({"CGW_WORKER_LEASE_SECONDS": "1000000000000"}, "CGW_WORKER_LEASE_SECONDS"),
    ({"CGW_WORKER_LEASE_SECONDS": "86401"}, "CGW_WORKER_LEASE_SECONDS"),
    ({"CGW_DELIVERY_BREAKER_COOLDOWN_SECONDS": "1e12"}, "CGW_DELIVERY_BREAKER_COOLDOWN_SECONDS"),
    ({"CGW_DELIVERY_BACKOFF_SECONDS": "901"}, "CGW_DELIVERY_BACKOFF_SECONDS"),
    ({"CGW_DELIVERY_MAX_ATTEMPTS": "101"}, "CGW_DELIVERY_MAX_ATTEMPTS"),
    ({"CGW_DELIVERY_BREAKER_THRESHOLD": "10001"}, "CGW_DELIVERY_BREAKER_THRESHOLD"),
    ({"CGW_DELIVERY_WEBHOOK_URL": "https://relay.example.com/push"}, "CGW_DELIVERY_WEBHOOK_SECRET"),
    ({"CGW_DELIVERY_WEBHOOK_SECRET": "whsec-123"}, "CGW_DELIVERY_WEBHOOK_URL"),
    (  # an HMAC key one signed delivery would give away to an offline search
        {"CGW_DELIVERY_WEBHOOK_URL": "https://relay.example.com/push", "CGW_DELIVERY_WEBHOOK_SECRET": "x"},
        "CGW_DELIVERY_WEBHOOK_SECRET",
    ),
    (
        {"CGW_DELIVERY_WEBHOOK_URL": "https://relay.example.com/", "CGW_DELIVERY_WEBHOOK_SECRET": " " * 40},
        "CGW_DELIVERY_WEBHOOK_SECRET",
    ),
    (
        {"CGW_DELIVERY_WEBHOOK_URL": "ftp://relay.example.com", "CGW_DELIVERY_WEBHOOK_SECRET": "x"},
        "CGW_DELIVERY_WEBHOOK_URL",
    ),
    ({"CGW_MAX_BODY_BYTES": "0"}, "CGW_MAX_BODY_BYTES"),
    ({"CGW_MAX_BODY_BYTES": "lots"}, "CGW_MAX_BODY_BYTES"),
    ({"CGW_MAX_BODY_BYTES": "99999999999999999999999"}, "CGW_MAX_BODY_BYTES"),  # no limit at all
    ({"CGW_MAX_BODY_BYTES": str(64 * 1024 * 1024 + 1)}, "CGW_MAX_BODY_BYTES"),  # more than a batch
    # Signed into every consent receipt and kept in the ledger for good (accepted, they were).
    ({"CGW_CONTROLLER": "   "}, "CGW_CONTROLLER"),
    ({"CGW_JURISDICTION": " "}, "CGW_JURISDICTION"),
    ({"CGW_CONTROLLER": "c" * 201}, "CGW_CONTROLLER"),
    ({"CGW_CONTROLLER": " Acme Pay Ltd \n"}, "CGW_CONTROLLER"),
    ({"CGW_CONTROLLER": "Acme\x1b[2J\x07"}, "CGW_CONTROLLER"),
    ({"CGW_CONTROLLER": "Acme\u202eLtd"}, "CGW_CONTROLLER"),
    ({"CGW_JURISDICTION": " cn\t"}, "CGW_JURISDICTION"),
    ({"CGW_CONTROLLER": "Acme\udcffLtd"}, "CGW_CONTROLLER"),  # a Latin-1 byte in an env file
    ({"CGW_CONTROLLER": "Acme\u2028Ltd"}, "CGW_CONTROLLER"),
    ({"CGW_CONTROLLER": "Acme\ue000Ltd"}, "CGW_CONTROLLER"),
    ({"CGW_CONTROLLER": "Acme\ufdd0Ltd"}, "CGW_CONTROLLER"),
    ({"CGW_WORKER_ENABLED": "maybe"}, "CGW_WORKER_ENABLED"),
    ({"CGW_LOG_LEVEL": "verbose"}, "CGW_LOG_LEVEL"),
    ({"CGW_HOST": "not..a..host"}, "CGW_HOST"),
    ({"CGW_HOST": "-leading.example"}, "CGW_HOST"),
    ({"CGW_HOST": "münchen.example"}, "CGW_HOST"),
    ({"CGW_DATA_DIR": "/dev/null"}, "CGW_DATA_DIR"),  # not a directory
    ({"CGW_DATA_DIR": "/dev/null/sub"}, "CGW_DATA_DIR"),  # cannot be created under a file
    ({"CGW_KEYSTORE_FILE": "/"}, "CGW_KEYSTORE_FILE"),  # a directory
]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "0.0.0.0",  # noqa: S104 (parsed here, never bound)
        "::",
        "::1",
        "localhost",
        "gw-1.internal.example.",
    ],
)
def test_hosts_that_can_be_bound_are_accepted(host: str) -> None:
    assert Settings.from_env({"CGW_HOST": host}).host == host


@pytest.mark.parametrize(
    ("env", "variable"), BAD, ids=[f"{next(iter(e))}={next(iter(e.values()))}" for e, _ in BAD]
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert variable in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_both_secret_and_public_key_is_an_error(pem_file: Path) -> None:
    env = {"CGW_JWT_SECRET": GOOD_SECRET, "CGW_JWT_PUBLIC_KEY_FILE": str(pem_file)}
    with pytest.raises(SettingsError, match="CGW_JWT_SECRET and CGW_JWT_PUBLIC_KEY_FILE"):
        Settings.from_env(env)


def test_secret_repr_and_str_are_masked() -> None:
    value = "super-secret-value-0123456789abcdef"
    secret = Secret(value)
    assert value not in repr(secret)
    assert value not in str(secret)
    assert value not in f"{secret!r} {secret}"
    assert secret.reveal() == value
    assert secret == Secret(value)
    assert secret != Secret(value + "x")
    assert secret != value  # a Secret never equals the bare string


def test_settings_repr_masks_every_secret() -> None:
    jwt_value, hook_value = "jwt-secret-" + "j" * 32, "hook-secret-" + "h" * 32
    settings = Settings.from_env(
        {
            "CGW_JWT_SECRET": jwt_value,
            "CGW_DELIVERY_WEBHOOK_URL": "https://relay.example.com/push",
            "CGW_DELIVERY_WEBHOOK_SECRET": hook_value,
        }
    )
    for text in (repr(settings), str(settings)):
        assert jwt_value not in text
        assert hook_value not in text
        assert "********" in text


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


# -- the CLI: exit 2 and one line naming the variable --------------------------------------------


def _cli_cases(tmp_path: Path, pem_file: Path) -> list[tuple[str, dict[str, str], str]]:
    return [
        ("port", {"CGW_PORT": "abc"}, "CGW_PORT"),
        ("timezone", {"CGW_TIMEZONE": "Mars/Base"}, "CGW_TIMEZONE"),
        ("short secret", {"CGW_JWT_SECRET": "short-secret-value"}, "CGW_JWT_SECRET"),
        (
            "secret and public key",
            {"CGW_JWT_SECRET": GOOD_SECRET, "CGW_JWT_PUBLIC_KEY_FILE": str(pem_file)},
            "CGW_JWT_PUBLIC_KEY_FILE",
        ),
        (
            "webhook without secret",
            {"CGW_DELIVERY_WEBHOOK_URL": "https://relay.example.com/push"},
            "CGW_DELIVERY_WEBHOOK_SECRET",
        ),
        (
            "missing public key file",
            {"CGW_JWT_PUBLIC_KEY_FILE": str(tmp_path / "none.pem")},
            "CGW_JWT_PUBLIC_KEY_FILE",
        ),
    ]


def test_cli_bad_settings_exit_2_with_one_line_naming_the_variable(tmp_path: Path, pem_file: Path) -> None:
    data = tmp_path / "data"
    cases = _cli_cases(tmp_path, pem_file)
    running = [
        (
            label,
            variable,
            subprocess.Popen(
                [CLI, "token", "x"],
                env={**env, "CGW_DATA_DIR": str(data)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for label, env, variable in cases
    ]
    problems = []
    for label, variable, process in running:
        out, err = process.communicate(timeout=60)
        lines = err.splitlines()
        if process.returncode != 2:
            problems.append(f"{label}: exit {process.returncode}, stderr {err!r}")
        elif len(lines) != 1 or variable not in lines[0]:
            problems.append(f"{label}: expected one line naming {variable}, got {err!r}")
        if out:
            problems.append(f"{label}: printed {out!r} on stdout")
        if "short-secret-value" in err:
            problems.append(f"{label}: the secret value was echoed")
    assert not problems, "\n".join(problems)
    assert not data.exists(), "a refused configuration must not create the data dir or keys"


@pytest.mark.parametrize("variable", ["CGW_JWT_PUBLIC_KEY_FILE", "CGW_JWT_SECRET"])
def test_cli_token_refuses_unless_the_dev_secret_signs(tmp_path: Path, pem_file: Path, variable: str) -> None:
    # With the identity service's secret, a minted token would be a real one, for any user.
    value = str(pem_file) if variable == "CGW_JWT_PUBLIC_KEY_FILE" else GOOD_SECRET
    env = {variable: value, "CGW_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([CLI, "token", "x"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("variable", "prints_token"), [(None, True), ("CGW_JWT_SECRET", False), ("CGW_KEYSTORE_FILE", False)]
)
def test_serve_prints_a_dev_token_only_under_the_dev_secret(
    tmp_path: Path, variable: str | None, prints_token: bool
) -> None:
    """Not with a key store of the operator's own either (a production one, the JWT setting
    forgotten): a live token would go wherever stderr is collected, and that is said instead."""
    with socket.socket() as probe:  # a free port, in case the server gets as far as listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"CGW_DATA_DIR": str(tmp_path / "data"), "CGW_PORT": str(port), "CGW_WORKER_ENABLED": "false"}
    if variable == "CGW_KEYSTORE_FILE":
        env[variable] = str(open_keystore(tmp_path / "prod-keys.json", create=True)[0].path)
    elif variable is not None:
        env[variable] = GOOD_SECRET
    with subprocess.Popen([CLI, "serve"], env=env, stderr=subprocess.PIPE, text=True) as server:
        assert server.stderr is not None
        banner = []
        try:
            for line in server.stderr:  # the banner is printed before the server starts
                banner.append(line)
                if "an API key:" in line:
                    break
        finally:
            server.terminate()
    assert any("an API key:" in line for line in banner), banner
    assert any("dev token for user 'demo-user'" in line for line in banner) is prints_token
    warned = any("checked with the key store's dev secret" in line for line in banner)
    assert warned is (variable == "CGW_KEYSTORE_FILE")


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("CGW_JWT_SECRET_FILE", "(there is no _FILE form: set CGW_JWT_SECRET itself)"),
        (
            "CGW_DELIVERY_WEBHOOK_SECRET_FILE",
            "(there is no _FILE form: set CGW_DELIVERY_WEBHOOK_SECRET itself)",
        ),
        ("CGW_DATADIR", "(did you mean CGW_DATA_DIR?)"),
        ("CGW_WORKER_CONCURENCY", "(did you mean CGW_WORKER_CONCURRENCY?)"),
        ("CGW_SOMETHING_ELSE", ""),
    ],
)
def test_an_unknown_cgw_variable_is_refused(variable: str, hint: str) -> None:
    """`CGW_JWT_SECRET_FILE` was ignored, and the gateway ran on dev tokens without a word."""
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: "/run/secrets/jwt"})
    assert str(refused.value) == f"{variable}: not a setting {hint}".rstrip()


def test_what_the_spec_lists_is_accepted(tmp_path: Path) -> None:
    env = {
        "CGW_DATA_DIR": str(tmp_path),
        "CGW_JWT_SECRET": GOOD_SECRET,
        "CGW_JWT_AUDIENCE": "consent-gateway",
        "CGW_DELIVERY_WEBHOOK_URL": "https://relay.example.com/push",
        "CGW_DELIVERY_WEBHOOK_SECRET": "w" * 32,
        "CGW_TIMEZONE": "Asia/Shanghai",
        "CGW_UNKNOWN_BUT_EMPTY": "",  # empty is unset
        "OTHER": "x",
    }
    assert Settings.from_env(env).timezone == "Asia/Shanghai"
    Settings.from_env({"CGW_JWT_PUBLIC_KEY_FILE": "", "CGW_DATA_DIR": str(tmp_path)})


def test_the_cli_refuses_an_unknown_variable_in_one_line(tmp_path: Path) -> None:
    env = {"CGW_DATA_DIR": str(tmp_path), "CGW_JWT_SECRET_FILE": str(tmp_path / "jwt")}
    done = subprocess.run([CLI, "token", "x"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "consent-gateway: configuration error: CGW_JWT_SECRET_FILE: not a setting "
        "(there is no _FILE form: set CGW_JWT_SECRET itself)\n"
    )
    assert list(tmp_path.iterdir()) == []


TOO_LONG = "/tmp/" + "n" * 300  # ENAMETOOLONG: `Path.exists` raises it rather than answer False


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CGW_DATA_DIR": TOO_LONG}, "CGW_DATA_DIR"),
        ({"CGW_KEYSTORE_FILE": TOO_LONG}, "CGW_KEYSTORE_FILE"),
        ({"CGW_JWT_PUBLIC_KEY_FILE": TOO_LONG}, "CGW_JWT_PUBLIC_KEY_FILE"),
    ],
)
def test_a_path_the_system_refuses_to_look_at_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(named + ":")


def test_the_cli_refuses_a_data_dir_it_cannot_look_at_in_one_line(tmp_path: Path) -> None:
    """It printed an OSError's traceback and exited 1, for every command."""
    done = subprocess.run(
        [CLI, "token", "x", "--data-dir", TOO_LONG], env={}, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert len(done.stderr.splitlines()) == 1
    assert "--data-dir" in done.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CGW_PORT": "abc"}, "CGW_PORT: must be a port number from 1 to 65535"),
        ({"CGW_PORT": " 80"}, "CGW_PORT: must be a port number from 1 to 65535"),
        ({"CGW_MAX_BODY_BYTES": "lots"}, "CGW_MAX_BODY_BYTES: must be a whole number from 1 to 67108864"),
        ({"CGW_USER_WRITES_PER_HOUR": "6e2"}, "CGW_USER_WRITES_PER_HOUR: must be a whole number from 0 to"),
        # What `int` and `float` take besides ASCII digits: taken, `٨٠٠٠` was port 8000.
        ({"CGW_PORT": "1_8502"}, "CGW_PORT: must be a port number from 1 to 65535"),
        ({"CGW_PORT": "\u0668\u0660\u0660\u0660"}, "CGW_PORT: must be a port number from 1 to 65535"),
        ({"CGW_MAX_BODY_BYTES": "1_000"}, "CGW_MAX_BODY_BYTES: must be a whole number from 1 to 67108864"),
        ({"CGW_DELIVERY_BACKOFF_SECONDS": " 1"}, "CGW_DELIVERY_BACKOFF_SECONDS: must be a positive number"),
        ({"CGW_DELIVERY_BACKOFF_SECONDS": "1_0"}, "CGW_DELIVERY_BACKOFF_SECONDS: must be a positive number"),
        ({"CGW_BODY_TIMEOUT_SECONDS": "\u0663"}, "CGW_BODY_TIMEOUT_SECONDS: must be a positive number"),
        ({"CGW_BODY_TIMEOUT_SECONDS": "nan"}, "CGW_BODY_TIMEOUT_SECONDS: must be a positive number"),
        (
            {"CGW_MAX_CONCURRENT_BATCHES": "0"},
            "CGW_MAX_CONCURRENT_BATCHES: must be a whole number from 1 to 64",
        ),
    ],
)
def test_a_number_that_is_none_is_refused_in_the_settings_words(env: dict[str, str], says: str) -> None:
    """Not Python's ("invalid literal for int() with base 10: 'abc'"), and no spaces forgiven."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(says), str(caught.value)
