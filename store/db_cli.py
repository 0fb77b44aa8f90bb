"""`voxfleet db`: the store's schema.

    voxfleet db upgrade     apply every migration not yet applied (alembic upgrade heads); a no-op when current
    voxfleet db current     print the revisions the database is at, and whether that is every head

The URL comes from VOXFLEET_DATABASE_URL (the chart's migration Job takes it from the same Secret as the gateway),
never from an argument: a command line is visible to every user of the machine in ps. It is never printed; lines
name the server as host:port/database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ENV = "VOXFLEET_DATABASE_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxfleet db", description=f"The store's schema (URL from ${ENV}).")
    commands = parser.add_subparsers(dest="command", required=True)
    upgrade = commands.add_parser("upgrade", help="apply every pending migration (alembic upgrade heads)")
    upgrade.add_argument("--wait-seconds", type=float, default=0.0,
                         help="wait up to this long for the server to accept connections (a database starting)")
    commands.add_parser("current", help="print the revisions the database is at")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from voxfleet.store import migrations_runner
    from voxfleet.store.database import DatabaseUrlError, where

    url = os.environ.get(ENV, "")
    if not url:
        print(f"voxfleet db: set {ENV} (postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE)", file=sys.stderr)
        return 2
    try:
        server = where(url)
    except DatabaseUrlError as error:
        print(f"voxfleet db: {ENV}: {error}", file=sys.stderr)
        return 2
    heads = migrations_runner.head_revisions()
    try:
        before = _when_reachable(lambda: migrations_runner.current_revisions(url),
                                 getattr(args, "wait_seconds", 0.0), server)
        if args.command == "current":
            state = "current" if before == heads else f"behind (heads: {', '.join(sorted(heads))})"
            print(f"{server}: {', '.join(sorted(before)) or '(empty)'}: {state}")
            return 0 if before == heads else 1
        started = time.monotonic()
        migrations_runner.upgrade(url)
        after = migrations_runner.current_revisions(url)
    except Exception as error:  # noqa: BLE001 - the kind and the server, never the driver's text with the URL
        print(f"voxfleet db {args.command}: {server}: {type(error).__name__}: {_safe(str(error), url)}",
              file=sys.stderr)
        return 1
    if before == after:
        print(f"{server}: already at {', '.join(sorted(after))}")
    else:
        print(f"{server}: upgraded from {', '.join(sorted(before)) or '(empty)'} to {', '.join(sorted(after))}"
              f" in {time.monotonic() - started:.1f} s")
    return 0


def _when_reachable(read, wait_seconds: float, server: str):
    """read(), retried every 2 s while the server cannot be reached (refused, starting up, timed out), for up to
    wait_seconds; any other error (a wrong password, a missing database) at once."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return read()
        except Exception as error:  # noqa: BLE001 - sorted below
            if not _unreachable(error) or time.monotonic() >= deadline:
                raise
            print(f"{server}: not reachable yet ({type(error).__name__}); retrying", file=sys.stderr, flush=True)
            time.sleep(2.0)


def _unreachable(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, (OSError, TimeoutError)) or type(error).__name__ in (
                "CannotConnectNowError", "ConnectionDoesNotExistError", "TooManyConnectionsError"):
            return True
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
        seen += 1
    return False


def _safe(message: str, url: str) -> str:
    """The error's text without the password, should a driver ever quote the URL."""
    from voxfleet.store.database import parse_url

    password = parse_url(url).password
    return message.replace(password, "***") if password else message
