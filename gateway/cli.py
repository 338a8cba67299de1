"""`consent-gateway` — serve, make API keys and dev tokens, verify the ledger offline.

Every command reads the same `CGW_` variables; flags given on the command line win. A bad
setting ends the process with one line naming the variable (or the flag, if one gave it) and exit
status 2.

Each command imports what it needs when it runs: the web framework and the delivery clients are
loaded by the commands that use them, not by every refusal of a mistyped path.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import shlex
import signal
import socket
import stat
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import msgspec

from gateway.clock import parse_rfc3339, rfc3339_text, system_clock
from gateway.logs import configure_logging
from gateway.scopes import SCOPES
from gateway.settings import Settings, SettingsError
from storage.failures import (
    DatabaseLockedError,
    StorageBusyError,
    StorageFailedError,
    StorageFullError,
    refusal_kind,
)
from storage.keys import KeyStoreError
from storage.migrations import SchemaError
from storage.store import DataDirError, check_pair

if TYPE_CHECKING:
    from storage.keys import KeyStore
    from storage.store import Store

__all__ = ["main"]

EXIT_USAGE = 2
_Read = TypeVar("_Read")
GIL_SWITCH_SECONDS = 0.0002
SHUTDOWN_SECONDS = 20
"""How long `serve` lets requests under way finish after SIGTERM, before it stops its delivery
worker (after the round in flight, seconds unless a provider is slow) and closes the stores: so
that the whole usually fits in the 30 s an orchestrator gives before SIGKILL."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consent-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port")
    serve.add_argument("--data-dir")

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create an API key and print it once")
    create.add_argument("--name", required=True)
    # "extend": `--scope a --scope b` adds up, where nargs="+" alone kept only the last flag's.
    create.add_argument("--scope", action="extend", nargs="+", required=True, choices=SCOPES, dest="scopes")
    create.add_argument("--data-dir")
    listing = keys.add_parser(
        "list", help="list the API keys (id, live or revoked with its time, scopes, name; never a secret)"
    )
    listing.add_argument("--data-dir")

    keystore = commands.add_parser("keystore", help="the key store").add_subparsers(
        dest="keystore_command", required=True
    )
    made = keystore.add_parser(
        "create",
        help="write a new key store (fresh keys, mode 0600) for CGW_KEYSTORE_FILE; the file must not exist",
    )
    made.add_argument("--out", type=_out_path, required=True)

    worker = commands.add_parser(
        "worker",
        help="run only the delivery worker (no API; its own /metrics on CGW_WORKER_METRICS_PORT if set)",
    )
    worker.add_argument("--data-dir")

    token = commands.add_parser("token", help="print a dev user token (HS256 dev secret)")
    token.add_argument("user_id")
    token.add_argument("--data-dir")

    audit = commands.add_parser("audit", help="audit tools").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify", help="verify the ledger's hash chain offline, or with --export a signed export file"
    )
    verify.add_argument("--data-dir")
    verify.add_argument(
        "--export",
        type=Path,
        help=(
            "a signed export: the file `audit export` writes, the dashboard's audit-export.jws, "
            'or the API\'s {"jws": ...} answer'
        ),
    )
    verify.add_argument(
        "--since",
        type=Path,
        help="with --export: a checkpoint saved earlier (an earlier export file, or the answer of "
        "/v1/audit/ledger/checkpoint) that the export's history must extend",
    )
    verify.add_argument(
        "--receipt",
        type=Path,
        action="append",
        default=[],
        help="with --export: a consent receipt a user was given (its JWS, the consent's answer, or "
        "the user's data export, for every receipt in it) whose event the export must hold, after "
        "the history the receipt was signed after (an export from the ledger's start); may be given "
        "more than once",
    )
    verify.add_argument(
        "--jwks",
        type=Path,
        help="with --export: check it with this JWK set (as served at /.well-known/jwks.json) "
        "instead of the key store; needs no data dir",
    )
    export = audit.add_parser("export", help="write the ledger events of a time range as a signed JWS")
    export.add_argument("--from", dest="start", type=_moment, help="RFC 3339, inclusive")
    export.add_argument("--to", dest="end", type=_moment, help="RFC 3339, exclusive")
    export.add_argument("--out", type=_out_path, required=True)
    export.add_argument("--data-dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Every file the gateway writes is its own: the databases, their -wal/-shm, the delivery
    # file, exports. SQLite creates its files 0644 under the usual umask 022; encrypted as they
    # are, their sizes and write times are still nobody else's business.
    os.umask(0o077)
    args = _parser().parse_args(argv)
    # Flags are raw strings, parsed and checked like their variables (`--port 70000` too).
    flags = {name: getattr(args, name, None) for name in ("data_dir", "host", "port")}
    try:
        settings = Settings.from_env(os.environ, flags=flags)
    except SettingsError as exc:
        print(f"consent-gateway: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    # The writer thread releases the GIL on every SQLite call and must win it back from the busy
    # event loop; at the default 5 ms switch interval that wait dominated a push (measured: 1,364
    # vs 1,989 decisions/s in-process at 0.2 ms).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    # Dev keys made by this command: `serve` says so in its banner, any other command (`token`,
    # `keys create` into an empty dir) after it has run, as loudly, once.
    makes_dev_keys = settings.keystore_file is None and _present(settings.keystore_path) is False
    try:
        return _dispatch(args, settings)
    except SettingsError as exc:  # found after the settings were read: still named as given
        print(f"consent-gateway: configuration error: {exc.given_by(flags)}", file=sys.stderr)
        return EXIT_USAGE
    except DataDirError as exc:  # one database without the other: named as the data dir was given
        print(f"consent-gateway: configuration error: {_data_dir_error(exc, flags)}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyStoreError, SchemaError) as exc:
        if settings.keystore_file is not None and _present(settings.keystore_file) is False:
            # Named as `serve` names it: the setting that gave the path, which is the one to mend.
            named = SettingsError(f"{exc} (when set, it must exist)", setting="keystore_file")
            print(f"consent-gateway: configuration error: {named}", file=sys.stderr)
        else:
            print(f"consent-gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseLockedError as exc:
        print(
            f"consent-gateway: {exc} (is CGW_KEYSTORE_FILE the key store of {settings.data_dir}?)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except StorageFailedError as exc:  # another process's write lock, a full disk: said, not a traceback
        if _read_only(exc):  # the data dir's files, not the disk: named as the data dir was given
            named = SettingsError(f"a database cannot be written (read-only: {exc})", setting="data_dir")
            print(f"consent-gateway: configuration error: {named.given_by(flags)}", file=sys.stderr)
        else:
            print(f"consent-gateway: {_storage_refusal(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the last resort: a path the checks above could not foresee
        where = f"{exc.filename}: " if exc.filename else ""
        if exc.filename and _inside(Path(exc.filename), settings.data_dir):  # e.g. a dir not ours to write
            named = SettingsError(f"{where}{exc.strerror or exc}", setting="data_dir").given_by(flags)
            print(f"consent-gateway: configuration error: {named}", file=sys.stderr)
        else:
            print(f"consent-gateway: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if makes_dev_keys and args.command not in ("serve", "keystore") and _present(settings.keystore_path):
            print("\n".join(_dev_keys_made(settings.keystore_path)), file=sys.stderr, flush=True)


def _present(path: Path) -> bool | None:
    """Whether `path` exists, or None when this user cannot tell: a data dir `serve` made (0700)
    asked about by another user, where `Path.exists` raises. The command then meets the same
    refusal where it opens the file, and says it in one line (`main`); asked here, before that,
    it was a traceback."""
    try:
        return path.exists()
    except OSError:
        return None


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return _serve(settings)
    if args.command == "keys" and args.keys_command == "list":
        return _list_keys(settings)
    if args.command == "keys":
        _no_new_gateway(settings)
        return _create_key(settings, args.name, tuple(dict.fromkeys(args.scopes)))
    if args.command == "keystore":
        return _create_keystore(args.out, settings)
    if args.command == "worker":
        _no_new_gateway(settings)
        return asyncio.run(_worker(settings))
    if args.command == "token":
        if settings.keystore_file is None:  # else it reads that key store, nothing of the data dir
            _no_new_gateway(settings)
        return _token(settings, args.user_id)
    if args.audit_command == "export":
        return asyncio.run(_export(settings, args.start, args.end, args.out))
    if (args.jwks is not None or args.since is not None or args.receipt) and args.export is None:
        flag = "--jwks" if args.jwks is not None else "--since" if args.since is not None else "--receipt"
        print(f"consent-gateway: {flag} is only for checking an --export file", file=sys.stderr)
        return EXIT_USAGE
    if args.export is not None:
        return _verify_export(settings, args.export, args.jwks, args.since, args.receipt)
    return _verify(settings)


def _read_only(exc: StorageFailedError) -> bool:
    """A write refused for want of permission (a file or a mount made read-only), which the
    writer reports as it does a full disk: `serve` checks for it at start, other commands meet it."""
    cause = exc.__cause__
    return isinstance(exc, StorageFullError) and cause is not None and refusal_kind(cause) == "read-only"


def _storage_refusal(exc: StorageFailedError) -> str:
    if isinstance(exc, StorageBusyError):
        return f"the data dir is busy ({exc}): another process is writing to it; try again"
    if isinstance(exc, StorageFullError):
        return f"nothing was written: the disk is full or refused the write ({exc})"
    return f"storage failed ({exc})"


def _data_dir_error(exc: DataDirError, flags: dict[str, str | None]) -> SettingsError:
    return SettingsError(str(exc), setting="data_dir").given_by(flags)


def _serve(settings: Settings) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.runtime import ensure_data_dir, load_keys, user_tokens
    from storage.store import Store

    _check_listen(settings.host, settings.port)
    if settings.keystore_file is not None and not settings.keystore_file.exists():
        # Before the data dir is made: nothing is made for a server that cannot start.
        raise SettingsError(
            f"no key store at {settings.keystore_file} (when set, it must exist)", setting="keystore_file"
        )
    first_run = not settings.keystore_path.exists()
    keys = load_keys(settings)  # before the data dir is made: a key store refused leaves no trace
    ensure_data_dir(settings)
    # Opened here once, and closed, so that a key store that does not open these databases, or
    # files that cannot be written, is one line and exit 2 now: in uvicorn's lifespan it would be
    # an exception-group traceback, and a read-only file was found only by the first write.
    store = Store(settings.data_dir, keys)
    try:
        if (name := store.read_only()) is not None:
            raise SettingsError(f"{name} cannot be written (read-only)", setting="data_dir")
    finally:
        store.close()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host  # an IPv6 address
    base = f"http://{host}:{settings.port}"
    lines = [
        *(_dev_keys_made(keys.path) if first_run else []),
        f"Consent Gateway on {base}",
        f"  API docs:   {base}/schema",
        f"  health:     {base}/healthz",
        f"  data:       {settings.data_dir.resolve()} (keys: {keys.path})",
    ]
    if _dev_tokens(settings) and settings.keystore_file is not None:
        # Keys of the operator's own, yet tokens checked with a secret no identity service has:
        # a forgotten setting, to be said rather than answered with a live token on stderr.
        lines.append(
            "  WARNING: user tokens are checked with the key store's dev secret: set CGW_JWT_SECRET\n"
            "    or CGW_JWT_PUBLIC_KEY_FILE to your identity service's"
        )
    elif _dev_tokens(settings):
        token = user_tokens(settings, keys).mint("demo-user", system_clock())
        lines.append(f"  dev token for user 'demo-user':\n    {token}")
        # In the fragment: the browser never sends it, so the token stays out of request logs.
        lines.append(f"  preferences: {base}/preferences#token={token}")
    lines.append(f"  auditor:     {base}/audit/")
    lines.append(f"  an API key: {_key_command(settings)}")
    print("\n".join(lines), file=sys.stderr, flush=True)
    uvicorn.run(
        create_app(settings, tune_collector=True),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
    return 0


def _check_listen(host: str, port: int) -> None:
    """Bind where uvicorn will, and let go: a port in use or an address not this machine's failed
    in uvicorn, after the banner and the data dir, with exit 3 and a message naming no setting.
    (Another process may take the port in between; uvicorn still refuses that, later.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn sets it
        try:
            probe.bind((host, port))
        except OSError as exc:
            # In use, or below 1024 for a user who may not bind there: the port's fault.
            setting = "port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "host"
            why = exc.strerror or str(exc)
            raise SettingsError(f"cannot listen on {host} port {port}: {why}", setting=setting) from None


def _key_command(settings: Settings) -> str:
    """`keys create` for this gateway, as it can be pasted into another terminal: the program,
    the data dir and the key store this server was given by flag or environment are said in
    full, or the key was made in whatever `./data` the pasting shell had (and this server
    answered it 401), or the program was not found."""
    store = settings.keystore_file
    env = f"CGW_KEYSTORE_FILE={shlex.quote(str(store.resolve()))} " if store is not None else ""
    data_dir = shlex.quote(str(settings.data_dir.resolve()))
    program = _program()
    if os.sep in program and not os.path.isabs(shlex.split(program)[0]):
        # Relative to where serve started: another terminal opens elsewhere.
        program = shlex.quote(str(Path(sys.argv[0]).absolute()))
    return (
        f"{env}{program} keys create --data-dir {data_dir} --name marketing "
        "--scope pushes:write campaigns:write"
    )


def _program() -> str:
    """This command as it can be pasted from here: `make run` starts `.venv/bin/consent-gateway`,
    which is not on a newcomer's PATH."""
    invoked = Path(sys.argv[0])
    if invoked.name != "consent-gateway" or not invoked.is_file():
        return "consent-gateway"
    relative = os.path.relpath(invoked)
    if relative.startswith(".."):
        return shlex.quote(str(invoked.absolute()))
    # With no slash a shell looks the name up on PATH, which is the point of not saying it bare.
    return shlex.quote(relative if os.sep in relative else f".{os.sep}{relative}")


async def _worker(settings: Settings) -> int:
    from prometheus_client import start_http_server

    from gateway.runtime import Runtime
    from gateway.worker import Worker

    runtime = Runtime(settings)
    worker = Worker(runtime.dispatcher, settings.worker_concurrency)
    metrics_server = None
    if (port := settings.worker_metrics_port) is not None:
        # Its deliveries, end states and circuits are counted in this process, which serves no
        # API: unscraped, a deployment of separate workers showed no delivery at all.
        try:
            metrics_server, _ = start_http_server(port, settings.host, registry=runtime.metrics.registry)
        except OSError as exc:
            await runtime.aclose()
            raise SettingsError(
                f"cannot serve metrics on {settings.host}:{port}: {exc.strerror or exc}",
                setting="worker_metrics_port",
            ) from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        await runtime.aclose()
    return 0


def _create_key(settings: Settings, name: str, scopes: tuple[str, ...]) -> int:
    from gateway.errors import GatewayError
    from gateway.runtime import Runtime
    from gateway.services.api_keys import check_name, check_scopes

    try:  # as the API refuses them, and before a gateway is set up in an empty data dir
        check_name(name)
        check_scopes(scopes)
    except GatewayError as exc:  # named by the flag that gave it, not the API's field
        flag = {"name": "--name", "scopes": "--scope"}.get(exc.field or "", exc.field)
        print(f"consent-gateway: {flag}: {exc.detail.removeprefix(f'{exc.field}: ')}", file=sys.stderr)
        return EXIT_USAGE
    if sys.stdout is None:  # closed (`>&-`): the secret would be shown nowhere
        print(
            "consent-gateway: standard output is closed: a key's secret is shown only there", file=sys.stderr
        )
        return EXIT_USAGE
    runtime = Runtime(settings)
    try:
        key, _ = runtime.api_keys.create_sync(name, scopes, show=lambda secret: print(secret, flush=True))
    except OSError as exc:
        why = exc.strerror or exc
        print(
            f"consent-gateway: the key's secret could not be written ({why}): no key was made",
            file=sys.stderr,
        )
        # What stays in stdout's buffer goes nowhere at exit, rather than failing there again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_USAGE
    finally:
        runtime.close()
    print(
        f"key id {key.key_id}, scopes {' '.join(key.scopes)}: store it now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def _dev_keys_made(path: Path) -> list[str]:
    return [
        "!" * 78,
        f"!! DEVELOPMENT KEYS were just created in {path} (mode 0600).",
        "!! Never use them in production: set CGW_KEYSTORE_FILE to a key store you control",
        "!! (`consent-gateway keystore create --out FILE` makes one) and keep it apart.",
        "!" * 78,
    ]


def _dev_tokens(settings: Settings) -> bool:
    """User tokens may be minted here only under the key store's dev secret. With
    CGW_JWT_SECRET set they would be real tokens of the identity service, good for any user."""
    return settings.jwt_secret is None and settings.jwt_public_key_file is None


def _create_keystore(path: Path, settings: Settings) -> int:
    """A production key store is made as the dev one is, from the OS's generator; what sets it
    apart is where it is kept, which the operator chooses here (the dev one lands in the data
    dir): never in the data dir, whose copies and backups would carry the keys with the data.
    Never over an existing file: its keys may be the only ones some data opens with."""
    from storage.keys import KEPT_APART, KeyStore

    if path.exists() or path.is_symlink():
        print(f"consent-gateway: {path} exists: a key store is never overwritten", file=sys.stderr)
        return EXIT_USAGE
    if _inside(path.parent, settings.data_dir):
        print(
            f"consent-gateway: --out {path} is inside the data dir {settings.data_dir}: keep the key "
            "store apart from the data and its backups",
            file=sys.stderr,
        )
        return EXIT_USAGE
    KeyStore.create(path, warning=KEPT_APART)
    print(
        f"consent-gateway: key store written to {path.resolve()} (mode 0600): set CGW_KEYSTORE_FILE to "
        "it, keep it apart from the data dir and its backups, and set CGW_JWT_SECRET or "
        "CGW_JWT_PUBLIC_KEY_FILE",
        file=sys.stderr,
    )
    return 0


def _token(settings: Settings, user_id: str) -> int:
    from gateway.runtime import load_keys, user_tokens
    from storage.store import DATA_FILE, Store

    if not _dev_tokens(settings):
        print(
            "consent-gateway: tokens are issued by your identity service "
            "(CGW_JWT_SECRET or a public key is set)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if (refused := _refused_user_id(settings, user_id)) is not None:
        print(f"consent-gateway: USER_ID: {refused}", file=sys.stderr)
        return EXIT_USAGE
    keys = load_keys(settings)
    if settings.keystore_file is None:
        # A token for a gateway whose databases the server would refuse is no good: one that lost
        # a database, was migrated by a newer version, or whose key store lacks a key it needs.
        # Opened as `keys create` opens it, migrations applied: the server would apply them too.
        check_pair(settings.data_dir)
        if (settings.data_dir / DATA_FILE).exists():
            Store(settings.data_dir, keys).close()
    print(user_tokens(settings, keys).mint(user_id, system_clock()))
    return 0


def _refused_user_id(settings: Settings, user_id: str) -> str | None:
    """Why the server would refuse a token for `user_id`, in its words, or None. Checked by the
    server's own verifier on a token minted under a throwaway secret, before any key is read (or
    made): a length check here let through what UTF-8 cannot encode (`token $'\\xff'`)."""
    from gateway.auth import UserTokens
    from gateway.errors import NotAuthenticated

    probe = UserTokens(audience=settings.jwt_audience, secret=os.urandom(32).hex())
    try:
        now = system_clock()
        probe.verify(probe.mint(user_id, now), now)
    except NotAuthenticated as exc:
        return exc.detail
    return None


def _list_keys(settings: Settings) -> int:
    """One line per key, oldest first: id, `live` or when it was revoked, scopes, name. Read
    without setting anything up, as the audit commands: a listing from a mistyped data dir would
    be an empty one."""
    from storage.repositories.api_keys import list_keys

    _, store = _existing_store(settings)
    try:
        listed = list_keys(store.data.reader())
    finally:
        store.close()
    for key in listed:
        state = "live" if key.revoked_at is None else f"revoked {rfc3339_text(key.revoked_at)}"
        print(f"{key.key_id}  {state}  {' '.join(key.scopes)}  {key.name}")
    return 0


def _verify(settings: Settings) -> int:
    """The hash chain, and the ledger against the latest signed checkpoint (`verify_ledger`)."""
    from gateway.services.audit_ledger import verify_ledger
    from gateway.signing import Signer

    keys, store = _existing_store(settings)
    try:
        result = verify_ledger(store.data.reader(), Signer(keys.signing).public_keys())
    finally:
        store.close()
    print(msgspec.json.encode(result).decode())
    return 0 if result.ok else 1


def _no_new_gateway(settings: Settings) -> None:
    """`keys create`, `worker` and `token` use the gateway in the data dir, and set one up only in
    an empty directory; `serve` alone creates the data dir. A key or dev token made in a new
    gateway at a mistyped CGW_DATA_DIR is no good on the real server (and a worker there delivers
    nothing), yet each was made without a word. A mistyped path seldom names an empty directory."""
    from storage.store import DATA_FILE, DIRECTORY_FILE

    data_dir = settings.data_dir
    # Any of these is a gateway's, whole or not: what is missing is named by the key store's checks
    # (`load_keys`), then by `check_pair` (`Store` opens none of a data dir without both databases).
    if any((data_dir / name).exists() for name in (DATA_FILE, DIRECTORY_FILE, "keys.json")):
        return
    try:
        if next(data_dir.iterdir(), None) is None:
            return
        why = f"it holds no {DATA_FILE}, {DIRECTORY_FILE} or keys.json"
    except FileNotFoundError:
        why = "no such directory"
    except NotADirectoryError:
        why = "not a directory"
    raise SettingsError(
        f"no gateway in {data_dir} ({why}): `consent-gateway serve` creates one; "
        "other commands set one up only in an empty directory",
        setting="data_dir",
    )


def _existing_store(settings: Settings, *, signs: bool = False) -> tuple[KeyStore, Store]:
    """The gateway the audit commands read; they never create one, nor migrate it. Dev keys and
    empty databases made in a mistyped data dir would verify as a clean, empty ledger; and an
    offline check that rewrote the files it checks would not be one."""
    from storage.keys import KeyStore
    from storage.store import DATA_FILE, DIRECTORY_FILE, Store, check_pair

    check_pair(settings.data_dir)
    for name in (DATA_FILE, DIRECTORY_FILE):
        if not (settings.data_dir / name).is_file():
            raise SettingsError(
                f"no {name} in {settings.data_dir}: not a gateway's data dir (this command creates nothing)",
                setting="data_dir",
            )
    if not settings.keystore_path.exists():
        raise KeyStoreError(
            f"no key store at {settings.keystore_path}: set CGW_KEYSTORE_FILE to the key store "
            f"of {settings.data_dir} (this command creates nothing)"
        )
    keys = KeyStore.load(settings.keystore_path)
    return keys, Store(settings.data_dir, keys, migrate=False, signs=signs)


def _out_path(text: str) -> Path:
    """Refused empty, as every other empty flag is: `Path("")` is the current directory."""
    if not text:
        raise argparse.ArgumentTypeError("empty: name the file to write")
    return Path(text)


def _moment(text: str) -> datetime:
    try:
        moment = parse_rfc3339(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time; e.g. 2026-11-23T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset; e.g. 2026-11-23T10:00:00Z")
    return moment


async def _export(settings: Settings, start: datetime | None, end: datetime | None, out: Path) -> int:
    """The same signed export as `GET /v1/audit/export`, checkpointing the ledger first.

    `out` is opened, and what it is looked at, before that: an unwritable path found afterwards
    would leave a signed checkpoint in the ledger for an export nobody got. A file this command
    created is removed again if the export is refused; one that was there is not truncated until
    there is an export, and only a regular file is (`--out /dev/stdout` into a pipe failed on the
    truncation, after signing)."""
    from gateway.errors import GatewayError
    from gateway.services.audit import AuditService
    from gateway.signing import Signer

    if start is not None and end is not None and start > end:  # before the ledger is checkpointed
        print("consent-gateway: --from: must not be after --to", file=sys.stderr)
        return EXIT_USAGE
    keys, store = _existing_store(settings, signs=True)  # it signs a checkpoint and the export
    existed = out.exists()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError as exc:
        store.close()
        print(f"consent-gateway: --out {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    audit, written = AuditService(store, system_clock, Signer(keys.signing)), False
    try:
        try:
            answer, count = await audit.export(start, end)
        finally:
            store.close()
        _write_out(fd, (answer.jws + "\n").encode(), truncate=regular)
        written = True
    except GatewayError as exc:
        print(f"consent-gateway: {exc.detail}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the reader of a pipe gone, a full disk: the checkpoint is signed
        print(f"consent-gateway: --out {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        os.close(fd)
        if not written and not existed:
            out.unlink(missing_ok=True)
    print(f"wrote {count} events to {out}", file=sys.stderr)
    return 0


def _write_out(fd: int, data: bytes, *, truncate: bool) -> None:
    """Straight to the descriptor, unbuffered: a failed write is reported once, here, not again
    by a buffered file's close."""
    if truncate:
        os.ftruncate(fd, 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _verify_export(
    settings: Settings, path: Path, jwks: Path | None, since: Path | None, receipt_files: list[Path]
) -> int:
    """Offline: needs only public keys — the key store's (current and retired), or with `--jwks`
    the published JWK set alone, so an auditor holds no secret — and never creates keys or
    databases."""
    from gateway.saved_files import export_token, published_keys, receipt_tokens, saved_checkpoint
    from gateway.services.export_check import verify_export
    from gateway.signing import Signer
    from storage.keys import KeyStore, KeyStoreError

    try:
        raw = path.read_bytes()
    except OSError as exc:
        print(f"consent-gateway: --export {path}: cannot read it: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # Its own step: a ValueError here is the export's, where the JWK set's check below
        # reported it as a bad --jwks file.
        token = export_token(raw)
    except ValueError as exc:
        print(f"consent-gateway: --export {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if jwks is None:
            keys = Signer(KeyStore.load(settings.keystore_path).signing).public_keys()
        else:
            keys = published_keys(jwks.read_bytes())
    except KeyStoreError as exc:  # an auditor away from the server has only the published keys
        print(
            f"consent-gateway: {exc}; to check with the published keys alone, save "
            "/.well-known/jwks.json and pass it as --jwks FILE",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except OSError as exc:
        given = f"--jwks {jwks}: cannot read it" if jwks is not None else f"cannot read {exc.filename}"
        print(f"consent-gateway: {given}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"consent-gateway: --jwks {jwks}: not a JWK set with an Ed25519 key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    saved = None
    if since is not None and (saved := _read_given("--since", since, saved_checkpoint)) is None:
        return EXIT_USAGE
    receipts: list[str] = []
    for receipt_file in receipt_files:
        if (tokens := _read_given("--receipt", receipt_file, receipt_tokens)) is None:
            return EXIT_USAGE
        receipts += tokens
    result = verify_export(token, keys, saved, receipts)
    print(msgspec.json.encode(result).decode())
    return 0 if result.ok else 1


def _read_given(flag: str, path: Path, parse: Callable[[bytes], _Read]) -> _Read | None:
    """`parse` of the file given with `flag`, or None with why it could not be read or parsed
    printed, as the other flags' problems are."""
    try:
        return parse(path.read_bytes())
    except OSError as exc:
        print(f"consent-gateway: {flag} {path}: cannot read it: {exc.strerror}", file=sys.stderr)
    except ValueError as exc:  # UnicodeDecodeError too
        print(f"consent-gateway: {flag} {path}: {exc}", file=sys.stderr)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
