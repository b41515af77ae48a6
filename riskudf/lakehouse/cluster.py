"""A Spark standalone cluster on loopback, from the installed pyspark: a master and workers,
each worker launching its own executor JVM; and Spark's history server over the event logs.

``python -m riskudf.lakehouse.cluster start|stop|status`` is what ``make cluster`` and
``make cluster-stop`` call; ``history-start|history-stop`` serve ``make history``. Each worker
offers ``gpus`` addresses of a stand-in resource named ``gpu`` (a discovery script that hands
them out, no device behind them), so that the stage-level scheduling of the scoring stage runs
as on GPU executors. Processes and their logs live in the state folder (``build/cluster``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MASTER_MAIN = "org.apache.spark.deploy.master.Master"
WORKER_MAIN = "org.apache.spark.deploy.worker.Worker"
HISTORY_MAIN = "org.apache.spark.deploy.history.HistoryServer"
HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """The standalone cluster could not be started or reached."""


@dataclass(frozen=True)
class ClusterSpec:
    """What to start: ``workers`` workers of ``cores`` cores, ``memory`` and ``gpus`` each."""

    state: Path
    port: int = 7077
    ui_port: int = 8080
    workers: int = 2
    cores: int = 2
    memory: str = "3g"
    gpus: int = 1

    @property
    def url(self) -> str:
        return f"spark://{HOST}:{self.port}"


def spark_class() -> Path:
    """bin/spark-class of the installed pyspark."""
    import pyspark

    return Path(pyspark.__file__).parent / "bin/spark-class"


def discovery_script(path: Path, addresses: list[str]) -> Path:
    """A resource discovery script printing the stand-in GPU addresses of one worker."""
    found = json.dumps({"name": "gpu", "addresses": addresses})
    path.write_text(f"#!/usr/bin/env bash\necho '{found}'\n")
    path.chmod(0o755)
    return path


def worker_properties(spec: ClusterSpec, index: int) -> dict[str, str]:
    """The Spark properties of worker ``index``: its stand-in GPUs, distinct across workers."""
    if spec.gpus == 0:
        return {}
    first = index * spec.gpus
    script = discovery_script(
        spec.state / f"worker-{index}/gpus.sh", [str(a) for a in range(first, first + spec.gpus)]
    )
    return {
        "spark.worker.resource.gpu.amount": str(spec.gpus),
        "spark.worker.resource.gpu.discoveryScript": str(script),
    }


def _environment(state: Path) -> dict[str, str]:
    # SPARK_LOCAL_IP: the web UIs bind to loopback too, not to every interface.
    return {
        **os.environ,
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOG_DIR": str(state / "logs"),
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }


def _launch(name: str, args: list[str], state: Path) -> int:
    log = (state / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [str(spark_class()), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_environment(state),
        start_new_session=True,
    )
    (state / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float, state: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise ClusterError(f"{what} did not come up within {timeout_s:.0f} s; see {state / 'logs'}")


def alive_workers(spec: ClusterSpec) -> int:
    """Workers registered with the master (its web UI's JSON), 0 when it does not answer."""
    from urllib.request import urlopen

    try:
        with urlopen(f"http://{HOST}:{spec.ui_port}/json/", timeout=2) as response:
            status = json.load(response)
    except OSError:
        return 0
    return sum(1 for worker in status.get("workers", []) if worker.get("state") == "ALIVE")


def start(spec: ClusterSpec, *, timeout_s: float = 120) -> str:
    """Start the master and the workers (a no-op when the master answers); the master's URL."""
    state = spec.state.resolve()
    if _listening(spec.port):
        return spec.url
    (state / "logs").mkdir(parents=True, exist_ok=True)
    _launch(
        "master",
        [MASTER_MAIN, "--host", HOST, "--port", str(spec.port), "--webui-port", str(spec.ui_port)],
        state,
    )
    _wait(lambda: _listening(spec.port), "the master", timeout_s, state)
    for index in range(spec.workers):
        folder = state / f"worker-{index}"
        (folder / "work").mkdir(parents=True, exist_ok=True)
        properties = folder / "worker.properties"
        properties.write_text(
            "".join(f"{k} {v}\n" for k, v in worker_properties(spec, index).items())
        )
        _launch(
            f"worker-{index}",
            [
                WORKER_MAIN,
                "--host",
                HOST,
                "--cores",
                str(spec.cores),
                "--memory",
                spec.memory,
                "--work-dir",
                str(folder / "work"),
                "--webui-port",
                "0",
                "--properties-file",
                str(properties),
                spec.url,
            ],
            state,
        )
    _wait(lambda: alive_workers(spec) == spec.workers, "the workers", timeout_s, state)
    return spec.url


def _signal(state: Path, name: str) -> int | None:
    """SIGTERM to the process group of ``name`` (the JVM and what it started); its pid."""
    pid_file = state / f"{name}.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    pid_file.unlink()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    return pid


def _wait_gone(pid: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # Reap it when this process started it (make cluster's CLI exits; a test's does not),
        # else a dead child stays a zombie that kill(pid, 0) still finds.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop(state: Path, names: list[str] | None = None) -> list[str]:
    """Stop the workers and the master (or the processes ``names``: "history"); the names of
    the processes stopped."""
    state = state.resolve()
    if names is None:
        names = [*sorted(p.stem for p in state.glob("worker-*.pid")), "master"]
    signalled = {name: _signal(state, name) for name in names}
    for pid in signalled.values():
        if pid is not None:
            _wait_gone(pid)
    return [name for name, pid in signalled.items() if pid is not None]


def start_history(state: Path, log_dir: Path, *, port: int = 18080, timeout_s: float = 60) -> str:
    """Spark's history server over ``log_dir`` (the jobs' event logs), on loopback."""
    state = state.resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    properties = state / "history.properties"
    properties.write_text(
        f"spark.history.fs.logDirectory {log_dir.resolve().as_uri()}\n"
        f"spark.history.ui.port {port}\n"
    )
    if not _listening(port):
        _launch("history", [HISTORY_MAIN, "--properties-file", str(properties)], state)
        _wait(lambda: _listening(port), "the history server", timeout_s, state)
    return f"http://{HOST}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "action", choices=("start", "stop", "status", "history-start", "history-stop")
    )
    parser.add_argument("--state", default="build/cluster", help="pid files and logs")
    parser.add_argument("--port", type=int, default=7077)
    parser.add_argument("--ui-port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2, help="cores per worker")
    parser.add_argument("--memory", default="3g", help="memory per worker")
    parser.add_argument("--gpus", type=int, default=1, help="stand-in GPU addresses per worker")
    parser.add_argument("--event-logs", default="lakehouse/spark-events")
    parser.add_argument("--history-port", type=int, default=18080)
    args = parser.parse_args(argv)
    state = Path(args.state)
    spec = ClusterSpec(
        state, args.port, args.ui_port, args.workers, args.cores, args.memory, args.gpus
    )
    try:
        if args.action == "start":
            print(f"cluster: {start(spec)} (web UI http://{HOST}:{args.ui_port})")
        elif args.action == "stop":
            print(f"cluster: stopped {', '.join(stop(state)) or 'nothing'}")
        elif args.action == "status":
            print(f"cluster: {spec.url} with {alive_workers(spec)} live workers")
        elif args.action == "history-start":
            url = start_history(state, Path(args.event_logs), port=args.history_port)
            print(f"history server: {url}")
        else:
            stopped = stop(state, ["history"])
            print(f"history server: {'stopped' if stopped else 'not running'}")
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
