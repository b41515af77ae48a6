"""The local Hive metastore database, served by Derby's network server on loopback.

Embedded Derby lets one JVM at a time open the metastore. The BI endpoint (a long-running Spark
Thrift Server) and the nightly job must use it at the same time, so locally the metastore
database is served by Derby's network server (``derbynet``, fetched from Maven Central by
``make install``) and every JVM connects through Derby's client driver. The client URL in
``spark-defaults.conf`` names host, port and database; ``spark.riskudf.metastore.home`` names the
folder the database lives in (``derby.system.home``). A cluster's defaults point at its own
metastore and carry no such key, so nothing here runs there.

``python -m riskudf.lakehouse.metastore start|stop|status`` is what the make targets call; the
jobs call :func:`ensure_metastore` so that a plain ``spark-submit`` works after a reboot too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

URL_KEY = "spark.hadoop.javax.jdo.option.ConnectionURL"
HOME_KEY = "spark.riskudf.metastore.home"
SERVER_MAIN = "org.apache.derby.drda.NetworkServerControl"
_CLIENT_URL = re.compile(r"^jdbc:derby://(?P<host>[^:/;]+):(?P<port>\d+)/(?P<database>[^;]+)")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PID_FILE = "derby-server.pid"


class MetastoreError(RuntimeError):
    """The metastore's Derby network server could not be started, reached or stopped."""


@dataclass(frozen=True)
class DerbyServer:
    """A Derby network server: where it listens and the folder its databases live in."""

    host: str
    port: int
    home: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_client_url(url: str) -> tuple[str, int, str] | None:
    """(host, port, database) of a Derby client URL; None for any other URL (embedded too)."""
    match = _CLIENT_URL.match(url)
    if match is None:
        return None
    return match["host"], int(match["port"]), match["database"]


def server_from_spark_conf(
    conf: Mapping[str, str], *, cwd: Path | None = None
) -> DerbyServer | None:
    """The local Derby server the Spark settings ask for, or None (embedded or remote metastore).

    Only a loopback client URL together with ``spark.riskudf.metastore.home`` names a server
    this project runs itself.
    """
    parsed = parse_client_url(conf.get(URL_KEY, ""))
    home = conf.get(HOME_KEY)
    if parsed is None or not home or parsed[0] not in LOOPBACK:
        return None
    host, port, _ = parsed
    return DerbyServer(host=host, port=port, home=((cwd or Path.cwd()) / home).resolve())


def read_spark_defaults(path: Path) -> dict[str, str]:
    """Key-value pairs of a ``spark-defaults.conf`` file (whitespace-separated, # comments)."""
    settings: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        settings[key] = value.strip()
    return settings


def is_listening(host: str, port: int, *, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def derby_classpath(extra_jars_dir: Path) -> str:
    """Derby's engine jars as shipped in the pyspark wheel, plus derbynet from ``jars/``."""
    # Under spark-submit, pyspark is imported from a zip inside SPARK_HOME: use SPARK_HOME.
    spark_home = os.environ.get("SPARK_HOME")
    if not spark_home:
        import pyspark

        spark_home = str(Path(pyspark.__file__).parent)
    spark_jars = Path(spark_home) / "jars"
    jars = sorted(spark_jars.glob("derby*.jar")) + sorted(extra_jars_dir.glob("derbynet-*.jar"))
    if not any(jar.name.startswith("derbytools-") for jar in jars):
        raise MetastoreError(f"Derby jars missing under {spark_jars}")
    if not any(jar.name.startswith("derbynet-") for jar in jars):
        raise MetastoreError(f"derbynet jar missing under {extra_jars_dir}: run `make install`")
    return os.pathsep.join(str(jar) for jar in jars)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise MetastoreError("java not found: set JAVA_HOME or put java on the PATH")
    return java


def _control(server: DerbyServer, jars_dir: Path, *args: str) -> list[str]:
    return [
        _java(),
        "-cp",
        derby_classpath(jars_dir),
        f"-Dderby.system.home={server.home}",
        f"-Dderby.drda.host={server.host}",
        SERVER_MAIN,
        *args,
        "-h",
        server.host,
        "-p",
        str(server.port),
    ]


def _owns_port(server: DerbyServer) -> bool:
    """Whether the server listening on the port is the one started for this home."""
    try:
        pid = int((server.home / PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def start_server(server: DerbyServer, *, jars_dir: Path, timeout_s: float = 60.0) -> int | None:
    """Start the server detached unless something already listens there; return its pid.

    The server outlives the caller (it is a local service, like the metastore of a cluster);
    :func:`stop_server` or ``make metastore-stop`` ends it. Its log is ``<home>/derby-server.log``.
    """
    if is_listening(server.host, server.port):
        if not _owns_port(server):
            raise MetastoreError(
                f"{server.address} is taken by a process that is not this lakehouse's metastore "
                f"(no live pid in {server.home / PID_FILE}); stop it, or change the port in "
                "spark-defaults.conf"
            )
        return None
    server.home.mkdir(parents=True, exist_ok=True)
    log_path = server.home / "derby-server.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            _control(server, jars_dir, "start", "-noSecurityManager"),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_listening(server.host, server.port):
            (server.home / PID_FILE).write_text(f"{proc.pid}\n")
            return proc.pid
        if proc.poll() is not None:
            # Another process may have won the race for the port: that is fine.
            if is_listening(server.host, server.port):
                return None
            raise MetastoreError(
                f"Derby network server on {server.address} exited with {proc.returncode}; "
                f"see {log_path}"
            )
        time.sleep(0.25)
    proc.kill()
    raise MetastoreError(f"Derby network server on {server.address} not up after {timeout_s}s")


def stop_server(server: DerbyServer, *, jars_dir: Path, timeout_s: float = 30.0) -> bool:
    """Shut the server down; False when nothing was listening."""
    if not is_listening(server.host, server.port):
        return False
    subprocess.run(
        _control(server, jars_dir, "shutdown"),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout_s,
        check=False,
    )
    deadline = time.monotonic() + timeout_s
    while is_listening(server.host, server.port):
        if time.monotonic() > deadline:
            raise MetastoreError(f"Derby network server on {server.address} did not stop")
        time.sleep(0.25)
    (server.home / PID_FILE).unlink(missing_ok=True)
    return True


def ensure_metastore(conf: Mapping[str, str], *, jars_dir: Path | None = None) -> None:
    """Start the local metastore server the Spark settings name, if it is not up yet.

    A no-op for an embedded or remote metastore. ``jars_dir`` defaults to ``./jars`` (the jobs
    run from the project root, as the relative paths in spark-defaults.conf require).
    """
    server = server_from_spark_conf(conf)
    if server is not None:
        start_server(server, jars_dir=jars_dir or Path("jars").resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the local metastore's Derby network server")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--spark-conf-dir", type=Path, default=Path("conf/spark"))
    parser.add_argument("--jars", type=Path, default=Path("jars"))
    args = parser.parse_args(argv)
    server = server_from_spark_conf(
        read_spark_defaults(args.spark_conf_dir / "spark-defaults.conf")
    )
    if server is None:
        print("spark-defaults.conf names no local Derby network metastore: nothing to do")
        return 0
    try:
        if args.action == "start":
            pid = start_server(server, jars_dir=args.jars.resolve())
            state = f"started (pid {pid})" if pid else "already running"
            print(
                f"metastore: Derby network server on {server.address} {state}, home {server.home}"
            )
        elif args.action == "stop":
            stopped = stop_server(server, jars_dir=args.jars.resolve())
            print(f"metastore: {'stopped' if stopped else 'was not running'} on {server.address}")
        else:
            up = is_listening(server.host, server.port)
            print(f"metastore: {'up' if up else 'down'} on {server.address}, home {server.home}")
            return 0 if up else 1
    except MetastoreError as exc:
        print(f"metastore: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
