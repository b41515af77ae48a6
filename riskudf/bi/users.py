"""BI users for the Thrift server's password provider (riskudf/bi/jvm/PasswordFile.java).

One line per user in ``bi.password_file``: ``user:iterations:salt_hex:hash_hex``, a
PBKDF2-HMAC-SHA256 hash; the file is written with mode 0600 and never holds a password.
``python -m riskudf.bi.users add NAME`` (``make bi-user BI_USER=NAME``) asks for the password
(or reads it from standard input when that is not a terminal); ``remove NAME`` deletes a user.
The server reads the file at every login: no restart needed.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
from pathlib import Path

from riskudf.config import ConfigError, load_config

ITERATIONS = 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256
USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD = 12


class UserError(ValueError):
    """A bad user name or password, or a password file that cannot be used."""


def hash_line(user: str, password: str, *, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{user}:{iterations}:{salt.hex()}:{digest.hex()}"


def verify(line: str, user: str, password: str) -> bool:
    """The Java provider's check, for tests and tools."""
    name, iterations, salt, digest = line.strip().split(":")
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return name == user and hmac.compare_digest(got, bytes.fromhex(digest))


def users(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.split(":", 1)[0] for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)


def add_user(path: Path, user: str, password: str, *, iterations: int = ITERATIONS) -> None:
    """Add ``user`` or replace its password."""
    if not USER.fullmatch(user):
        raise UserError(f"user name {user!r}: letters, digits and _.@- only, at most 64")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    kept = [
        line
        for line in (path.read_text().splitlines() if path.exists() else [])
        if line.strip() and line.split(":", 1)[0] != user
    ]
    _write(path, [*kept, hash_line(user, password, iterations=iterations)])


def remove_user(path: Path, user: str) -> bool:
    if user not in users(path):
        return False
    _write(path, [line for line in path.read_text().splitlines() if line.split(":", 1)[0] != user])
    return True


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("add", "remove", "list"))
    parser.add_argument("user", nargs="?", default="")
    parser.add_argument("--conf", default="conf/local.yaml", help="YAML config file")
    args = parser.parse_args(argv)
    try:
        path = Path(load_config(args.conf).bi.password_file)
        if args.action == "list":
            print("\n".join(users(path)))
        elif args.action == "add":
            add_user(path, args.user, _read_password())
            print(f"BI user {args.user} saved in {path}")
        elif not remove_user(path, args.user):
            print(f"no BI user {args.user} in {path}", file=sys.stderr)
            return 1
    except (UserError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
