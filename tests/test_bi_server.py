"""Over the wire: `jobs/serve_bi.py` (what `make bi` runs) in its own JVM on a free loopback port,
sharing the suite's metastore; PyHive and beeline query the views; delta-rs and DuckDB read the
Delta tables without Spark; a query during a scoring run sees the previous complete run."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyspark
import pytest
import yaml
from conftest import free_port

from demo.portfolio import DemoSpec, write_demo_tables
from riskudf.bi.users import add_user
from riskudf.bi.views import after_nightly_write
from riskudf.config import RiskConf, load_config
from riskudf.lakehouse.metastore import HOME_KEY, URL_KEY, read_spark_defaults
from riskudf.scoring import pipeline
from riskudf.scoring.pipeline import score_portfolio

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPARK_HOME = Path(pyspark.__file__).parent
DB = "bi_wire"
D1, D2 = dt.date(2026, 10, 31), dt.date(2026, 11, 28)
N = 40
READY = "riskudf BI ready: "
PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class Lakehouse:
    conf: RiskConf
    conf_path: Path
    first_run_id: str
    first_scored: int  # obligors with a report by D1 (the others are quarantined NO_REPORT)


@dataclass(frozen=True)
class Server:
    port: int
    url: str


@pytest.fixture(scope="module")
def lakehouse(spark, tiny_model, tmp_path_factory) -> Lakehouse:
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = DB
    data["scoring"].update(model=str(tiny_model), partitions=2)
    conf_path = tmp_path_factory.mktemp("bi_wire") / "bi.yaml"
    password_file = conf_path.parent / "bi_users"
    add_user(password_file, "analyst", PASSWORD, iterations=1000)
    data["bi"].update(port=free_port(), ready_timeout_s=240, password_file=str(password_file))
    data["monitoring"]["report_dir"] = str(conf_path.parent / "reports")
    # The server is started from the project root: its event logs go to the test's folder.
    data["spark"]["event_log_dir"] = str(conf_path.parent / "spark-events")
    conf_path.write_text(yaml.safe_dump(data))
    conf = load_config(conf_path)
    write_demo_tables(
        spark, database=DB, n_obligors=N, spec=DemoSpec(seed=11), filing_lookback_days=730
    )
    first = score_portfolio(spark, conf, as_of=D1)
    after_nightly_write(spark, conf, as_of=D1)
    return Lakehouse(
        conf=conf, conf_path=conf_path, first_run_id=first.run_id, first_scored=first.rows_scored
    )


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@pytest.fixture(scope="module")
def server(spark, lakehouse, tmp_path_factory) -> Iterator[Server]:
    """spark-submit jobs/serve_bi.py with the suite's metastore; always stopped at the end."""
    conf_dir = tmp_path_factory.mktemp("bi_server_conf")
    # The project's own Spark defaults (Delta jars, class path, catalog), pointed at the suite's
    # warehouse and metastore server instead of the local lakehouse.
    suite = dict(spark.sparkContext.getConf().getAll())
    settings = read_spark_defaults(ROOT / "conf/spark/spark-defaults.conf")
    del settings[HOME_KEY]  # the suite runs the metastore server, the job must not start one
    settings |= {
        URL_KEY: suite[URL_KEY],
        "spark.sql.warehouse.dir": suite["spark.sql.warehouse.dir"],
        "spark.driver.memory": "2g",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.extraJavaOptions": f"-Dderby.stream.error.file={conf_dir / 'derby.log'}",
    }
    (conf_dir / "spark-defaults.conf").write_text(
        "".join(f"{key} {value}\n" for key, value in settings.items())
    )
    (conf_dir / "log4j2.properties").write_text((ROOT / "conf/spark/log4j2.properties").read_text())
    env = {**os.environ, "SPARK_CONF_DIR": str(conf_dir), "PYSPARK_PYTHON": sys.executable}
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    port = lakehouse.conf.bi.port
    stderr = (conf_dir / "server.log").open("w")
    pid_file = conf_dir / "bi.pid"
    command = [str(BIN / "spark-submit"), "jobs/serve_bi.py", "--conf", str(lakehouse.conf_path)]
    proc = subprocess.Popen(
        [*command, "--pid-file", str(pid_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the JVM and its Python driver
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        ready = ""
        while not ready.startswith(READY):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (conf_dir / "server.log").read_text()[-4000:]
                pytest.fail(f"BI server not ready (exit {proc.returncode}):\n{log}")
            try:
                ready = lines.get(timeout=1.0)
            except queue.Empty:
                continue
        url = f"jdbc:hive2://127.0.0.1:{port}/{DB}"
        assert ready.startswith(f"{READY}{url} ")
        yield Server(port=port, url=url)
    finally:
        # As `make bi-stop` does: SIGTERM to the Python driver, which stops the server and Spark.
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=90)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
        proc.wait(timeout=30)
        stderr.close()
    assert not pid_file.exists()


def wire(
    server: Server, sql: str, *, user: str = "analyst", password: str = PASSWORD
) -> list[tuple]:
    """Rows of a query sent over the HiveServer2 protocol with PyHive (what Superset uses)."""
    from pyhive import hive

    conn = hive.connect(
        host="127.0.0.1",
        port=server.port,
        username=user,
        password=password,
        auth="CUSTOM",
        database=DB,
    )
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        return sorted(tuple(row) for row in cursor.fetchall())
    finally:
        conn.close()


def local(spark, sql: str) -> list[tuple]:
    """The same query in the suite's own Spark session; dates as the wire returns them."""
    return sorted(
        tuple(v.isoformat() if isinstance(v, dt.date) else v for v in row)
        for row in spark.sql(sql).collect()
    )


def beeline(server: Server, sql: str) -> list[str]:
    """Output lines of the pyspark wheel's beeline (the Hive JDBC driver) for one statement."""
    done = subprocess.run(
        [
            str(BIN / "beeline"),
            "-u",
            server.url,
            "-n",
            "analyst",
            "-p",
            PASSWORD,
            "--silent=true",
            "--outputformat=tsv2",
            "-e",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "SPARK_HOME": str(SPARK_HOME)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # beeline may echo its prompt before the first line of a result.
    lines = (re.sub(r"^\d+: jdbc:hive2://\S+> ", "", line) for line in done.stdout.splitlines())
    return [line for line in lines if line.strip()]


def assert_rows_close(got: list[tuple], expected: list[tuple]) -> None:
    """Equal rows; doubles equal to 1e-12 relative (sums may add up in another order)."""
    assert len(got) == len(expected), (got, expected)
    for ours, theirs in zip(got, expected, strict=True):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                assert math.isclose(a, b, rel_tol=1e-12), (ours, theirs)
            else:
                assert a == b, (ours, theirs)


LATEST = f"SELECT obligor_id, as_of_date, pd, grade, decision, run_id FROM {DB}.v_latest_scores"
SUMMARY = (
    "SELECT as_of_date, segment, grade, obligors, exposure, mean_pd, lgd, expected_loss "
    f"FROM {DB}.v_portfolio_summary"
)
ALERTS = f"SELECT alert_id, severity, rule, value FROM {DB}.v_alerts_open"
HISTORY = f"SELECT run_id, as_of_date, status, is_current, rows_scored FROM {DB}.v_run_history"


def test_views_over_the_wire_match_spark(spark, lakehouse, server) -> None:
    for sql in (LATEST, SUMMARY, ALERTS, HISTORY):
        assert_rows_close(wire(server, sql), local(spark, sql))
    latest = wire(server, LATEST)
    assert len(latest) == lakehouse.first_scored > N * 0.8
    assert {(r[1], r[5]) for r in latest} == {(D1.isoformat(), lakehouse.first_run_id)}
    assert wire(server, HISTORY) == [
        (lakehouse.first_run_id, D1.isoformat(), "success", True, lakehouse.first_scored)
    ]


@pytest.mark.parametrize(
    ("user", "password"), [("analyst", "wrong password!"), ("nobody", PASSWORD)]
)
def test_a_wrong_password_or_user_is_refused(server, user: str, password: str) -> None:
    from thrift.transport.TTransport import TTransportException

    with pytest.raises(TTransportException):
        wire(server, f"SELECT count(*) FROM {DB}.v_latest_scores", user=user, password=password)


GUARD = "riskudf BI serves the output tables and views only"


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        (f"SELECT * FROM {DB}.credit_reports", GUARD),
        (
            f"SELECT obligor_id FROM {DB}.scored_portfolio WHERE obligor_id IN "
            f"(SELECT obligor_id FROM {DB}.filings)",
            GUARD,
        ),
        (f"SELECT legal_name FROM {DB}.portfolio", GUARD),
        (f"SELECT count(*) FROM {DB}.outcomes", GUARD),
        (f"CREATE VIEW {DB}.mine AS SELECT * FROM {DB}.credit_reports", GUARD),
        (f"CREATE TEMPORARY VIEW mine AS SELECT * FROM {DB}.credit_reports", GUARD),
        # spark.sql.runSQLOnFiles is off in BI sessions: a path is no table.
        ("SELECT * FROM delta.`{reports}`", "TABLE_OR_VIEW_NOT_FOUND"),
    ],
)
def test_an_analyst_cannot_read_the_inputs(spark, server, sql: str, refusal: str) -> None:
    from pyhive.exc import OperationalError

    reports = _path(spark, "credit_reports")
    with pytest.raises(OperationalError, match=refusal):
        wire(server, sql.format(reports=reports))


def test_an_analyst_reads_the_output_tables_and_views(spark, server) -> None:
    for table in ("v_latest_scores", "v_portfolio_summary", "scored_portfolio", "score_runs"):
        got = wire(server, f"SELECT count(*) FROM {DB}.{table}")
        assert got == [(spark.table(f"{DB}.{table}").count(),)], table
    assert ("credit_reports",) in [(r[1],) for r in wire(server, f"SHOW TABLES IN {DB}")]


def test_beeline_sees_the_views_columns_and_rows(spark, server) -> None:
    # JDBC metadata (what DBeaver's navigator shows): the columns of views and Delta tables.
    for name in ("v_latest_scores", "scored_portfolio"):
        lines = beeline(server, f"!columns {name}")
        expected = [f.name for f in spark.table(f"{DB}.{name}").schema.fields]
        assert [c for c in expected if not any(f"\t{c}\t" in line for line in lines)] == []
    lines = beeline(server, f"{SUMMARY} ORDER BY as_of_date, segment, grade")
    assert lines[0].split("\t") == [
        "as_of_date",
        "segment",
        "grade",
        "obligors",
        "exposure",
        "mean_pd",
        "lgd",
        "expected_loss",
    ]
    expected_rows = spark.sql(f"{SUMMARY} ORDER BY as_of_date, segment, grade").collect()
    got = [line.split("\t") for line in lines[1:]]
    assert [r[:4] for r in got] == [
        [r["as_of_date"].isoformat(), r["segment"], r["grade"], str(r["obligors"])]
        for r in expected_rows
    ]
    assert_rows_close(
        [tuple(float(v) for v in r[4:]) for r in got],
        [(r["exposure"], r["mean_pd"], r["lgd"], r["expected_loss"]) for r in expected_rows],
    )


def _path(spark, table: str) -> str:
    return str(spark.sql(f"DESCRIBE DETAIL {DB}.{table}").first()["location"]).removeprefix("file:")


def _duckdb() -> Any:
    import duckdb
    import duckdb_ext  # type: ignore[import-not-found]

    extensions = Path(next(iter(duckdb_ext.__path__))) / "extensions"
    conn = duckdb.connect(config={"extension_directory": str(extensions)})
    conn.execute("LOAD delta")
    return conn


def test_delta_rs_and_duckdb_read_what_spark_and_the_wire_serve(spark, lakehouse, server) -> None:
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    scored = _path(spark, "scored_portfolio")
    columns = ["obligor_id", "as_of_date", "pd", "grade", "decision", "run_id"]
    # delta-rs's own engine. Not to_pyarrow_table(): pyarrow's dataset scanner leaves threads that
    # can abort the interpreter at exit ("terminate called without an active exception",
    # apache/arrow#34314), which would fail `make test` after every test passed.
    query = QueryBuilder().register("scored", DeltaTable(scored))
    by_delta_rs = pa.table(query.execute(f"SELECT {', '.join(columns)} FROM scored")).to_pylist()
    from_rs = sorted(
        tuple(r[c].isoformat() if c == "as_of_date" else r[c] for c in columns) for r in by_delta_rs
    )
    assert from_rs == local(spark, f"SELECT {', '.join(columns)} FROM {DB}.scored_portfolio")
    assert from_rs == wire(server, LATEST)  # one successful run so far: the view is the table

    conn = _duckdb()
    runs, portfolio = _path(spark, "score_runs"), _path(spark, "portfolio")
    bi = lakehouse.conf.bi
    by_segment = " ".join(
        f"WHEN '{k}' THEN CAST({v} AS DOUBLE)" for k, v in bi.lgd_by_segment.items()
    )
    lgd = f"CASE coalesce(p.segment, 'unknown') {by_segment} ELSE CAST({bi.lgd} AS DOUBLE) END"
    duck = conn.execute(
        f"""
        SELECT strftime(s.as_of_date, '%Y-%m-%d'), coalesce(p.segment, 'unknown'), s.grade,
               count(*), sum(p.exposure), avg(s.pd), max({lgd}), sum(s.pd * p.exposure * {lgd})
        FROM delta_scan('{scored}') s
        JOIN (SELECT run_id FROM delta_scan('{runs}') WHERE status = 'success') r USING (run_id)
        LEFT JOIN delta_scan('{portfolio}') p USING (obligor_id)
        GROUP BY ALL
        """
    ).fetchall()
    assert_rows_close(sorted(duck), wire(server, SUMMARY))
    assert_rows_close(sorted(duck), local(spark, SUMMARY))
    # Row by row, DuckDB reads the values Spark wrote (doubles bit for bit, the run's timestamp).
    raw = f"SELECT {', '.join(columns)}, unix_micros(scored_at) FROM {DB}.scored_portfolio"
    by_duckdb = conn.execute(
        f"SELECT obligor_id, strftime(as_of_date, '%Y-%m-%d'), pd, grade, decision, run_id, "
        f"epoch_us(scored_at) FROM delta_scan('{scored}')"
    ).fetchall()
    by_spark = local(spark, raw)
    assert sorted(by_duckdb) == by_spark
    assert len(by_spark) == lakehouse.first_scored


@dataclass
class HeldRun:
    """A scoring run in a thread, held between its two commits until ``release`` is set."""

    committed: threading.Event  # the scored rows are committed, the run-log row is not
    release: threading.Event
    thread: threading.Thread
    outcome: dict[str, Any]

    def poll_until_committed(self, probe: Any) -> list[Any]:
        """Call ``probe()`` over and over while the run scores; once more after its commit."""
        seen = []
        deadline = time.monotonic() + 300
        while not self.committed.is_set():
            assert time.monotonic() < deadline, "the scoring run never reached its run-log write"
            assert self.thread.is_alive(), self.outcome
            seen.append(probe())
        seen.append(probe())
        return seen

    def result(self) -> Any:
        self.release.set()
        self.thread.join(300)
        assert "error" not in self.outcome, self.outcome
        return self.outcome["result"]


@contextlib.contextmanager
def held_run(spark, conf: RiskConf, as_of: dt.date, monkeypatch) -> Iterator[HeldRun]:
    """score_portfolio in a thread of the suite's session, held before its score_runs write."""
    committed, release = threading.Event(), threading.Event()
    real_append = pipeline.append

    def gated_append(df: Any, table: str) -> None:
        if table.endswith(".score_runs"):
            committed.set()
            if not release.wait(300):
                raise TimeoutError("the test never released the run")
        real_append(df, table)

    monkeypatch.setattr(pipeline, "append", gated_append)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = score_portfolio(spark, conf, as_of=as_of)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    held = HeldRun(committed=committed, release=release, thread=thread, outcome=outcome)
    thread.start()
    try:
        yield held
    finally:
        release.set()
        thread.join(300)
        monkeypatch.undo()


def unmonitored(conf: RiskConf) -> RiskConf:
    """``conf`` without monitoring: the held runs test what BI sees of the scores' commits."""
    return conf.model_copy(
        update={"monitoring": conf.monitoring.model_copy(update={"enabled": False})}
    )


def date_rows(spark, as_of: dt.date) -> list[tuple]:
    """The scored table's rows of one date, as LATEST selects them."""
    return local(
        spark,
        "SELECT obligor_id, as_of_date, pd, grade, decision, run_id "
        f"FROM {DB}.scored_portfolio WHERE as_of_date = '{as_of}'",
    )


def test_a_query_during_a_scoring_run_sees_the_previous_complete_run(
    spark, lakehouse, server, monkeypatch
) -> None:
    before_latest, before_summary = wire(server, LATEST), wire(server, SUMMARY)
    before_history = wire(server, HISTORY)
    assert {r[1] for r in before_latest} == {D1.isoformat()}
    with held_run(spark, unmonitored(lakehouse.conf), D2, monkeypatch) as run:
        # Queries while the documents are scored, and one with the new run's rows committed to
        # the scored table but its success not logged yet.
        observed = run.poll_until_committed(lambda: wire(server, LATEST))
        new_rows = date_rows(spark, D2)
        assert len(new_rows) == N
        assert len({r[5] for r in new_rows}) == 1  # all of them, from the held run
        assert_rows_close(wire(server, SUMMARY), before_summary)
        assert wire(server, HISTORY) == before_history
        result = run.result()
    assert all(seen == before_latest for seen in observed), "a query saw a partial run"
    after = wire(server, LATEST)
    assert {(r[1], r[5]) for r in after} == {(D2.isoformat(), result.run_id)}
    assert after == local(spark, LATEST) == date_rows(spark, D2)
    assert len(after) == N


def test_a_rerun_of_a_scored_date_never_shows_a_partial_run(
    spark, lakehouse, server, monkeypatch
) -> None:
    # D1 and D2 are scored and logged (previous test). A rerun of D2 replaces the date's rows in
    # one commit: before it, the views show the previous D2 run; between the rerun's two commits,
    # each obligor's previous successful date (D1), as docs/bi.md says; never rows of the rerun.
    if not any(r[1] == D2.isoformat() for r in wire(server, LATEST)):
        pytest.skip("needs D2 scored by the previous test")
    before_latest, d1_rows = wire(server, LATEST), date_rows(spark, D1)
    d1_summary = [r for r in wire(server, SUMMARY) if r[0] == D1.isoformat()]
    with held_run(spark, unmonitored(lakehouse.conf), D2, monkeypatch) as run:
        observed = run.poll_until_committed(lambda: wire(server, LATEST))
        rerun_ids = {r[5] for r in date_rows(spark, D2)}
        assert len(rerun_ids) == 1 and rerun_ids.isdisjoint(r[5] for r in before_latest)
        assert observed[-1] == d1_rows
        assert_rows_close(wire(server, SUMMARY), d1_summary)
        result = run.result()
    assert all(seen in (before_latest, d1_rows) for seen in observed), "a query saw a partial run"
    assert wire(server, LATEST) == date_rows(spark, D2)
    assert {r[5] for r in wire(server, LATEST)} == {result.run_id}
