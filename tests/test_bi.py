"""The BI objects on hand-made rows: documented tables, the four views' exact values, Z-order."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from riskudf.bi.views import (
    compact_scored_date,
    document_table,
    documented_tables,
    lgd_sql,
    publish_bi_objects,
)
from riskudf.config import BiConf, RiskConf, TablesConf, load_config
from riskudf.lakehouse.delta import (
    ddl,
    ensure_database,
    ensure_table,
    latest_version,
    overwrite_table,
    quote_name,
    read_version,
    schema,
)
from riskudf.lakehouse.schemas import (
    MONITOR_ALERTS_COLUMNS,
    MONITOR_SHADOW_COLUMNS,
    SCORE_RUNS_COLUMNS,
    SCORED_PORTFOLIO_COLUMNS,
)

ROOT = Path(__file__).resolve().parents[1]
D0, D1, D2 = dt.date(2026, 9, 30), dt.date(2026, 10, 31), dt.date(2026, 11, 28)
T = dt.datetime(2026, 11, 29, 1, 0, 0)


def conf_for(database: str, tmp_path: Path, **bi: object) -> RiskConf:
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = database
    data["bi"].update(bi)
    path = tmp_path / f"{database}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def scored_row(obligor: str, as_of: dt.date, pd: float, grade: str, run_id: str) -> tuple:
    return (
        obligor,
        as_of,
        pd,
        grade,
        "approve",
        10,
        False,
        1,
        0,
        30,
        "m-1",
        run_id,
        T,
        None,
        False,
        run_id,
        None,  # reasons: approve rows have none
    )


def run_row(run_id: str, as_of: dt.date, status: str) -> tuple:
    return (
        run_id,
        as_of,
        T,
        T,
        status,
        3,
        3,
        0,
        0,
        "m-1",
        {"x.portfolio": 0},
        1.5,
        None,
        0,
        "full",
        0,
        None,
        None,  # scoring_workers
        None,  # knowledge_time
        None,  # late_records
        None,  # environment
        None,  # reproduction
        None,  # redactions
    )


@pytest.fixture(scope="module")
def hand_made(spark, tmp_path_factory) -> RiskConf:
    """Runs: r0 (D1, superseded by r1), r1 (D1, success), r2 (D2, failed, rows present),
    r3 (D0, success). Obligor Z is scored but no longer in the portfolio; C never scored."""
    conf = conf_for("bi_unit", tmp_path_factory.mktemp("bi_unit"))
    spark.sql("CREATE DATABASE IF NOT EXISTS bi_unit")
    portfolio = spark.createDataFrame(
        [
            ("A", "retail", 1000.0, "26-35", "north", None),
            ("B", "corporate", 2_000_000.0, None, "south", "software"),
            ("C", "retail", 500.0, "51-65", "east", None),
        ],
        "obligor_id string, segment string, exposure double, age_band string, region string, "
        "industry string",
    )
    overwrite_table(portfolio, "bi_unit.portfolio")
    publish_bi_objects(spark, conf)
    scored = [
        scored_row("A", D1, 0.02, "BB", "r1"),
        scored_row("B", D1, 0.001, "AA", "r1"),
        scored_row("A", D2, 0.5, "CC", "r2"),
        scored_row("B", D2, 0.4, "CC", "r2"),
        scored_row("A", D0, 0.03, "BB", "r3"),
        scored_row("Z", D0, 0.2, "CCC", "r3"),
    ]
    spark.createDataFrame(scored, schema(SCORED_PORTFOLIO_COLUMNS)).writeTo(
        "bi_unit.scored_portfolio"
    ).append()
    runs = [
        run_row("r0", D1, "success"),
        run_row("r1", D1, "success"),
        run_row("r2", D2, "failed"),
        run_row("r3", D0, "success"),
    ]
    spark.createDataFrame(runs, schema(SCORE_RUNS_COLUMNS)).writeTo("bi_unit.score_runs").append()
    alerts = [
        (
            "a1",
            "r1",
            D1,
            "psi_pd",
            "alert",
            "psi",
            "segment",
            "retail",
            0.31,
            0.25,
            T,
            "open",
            None,
        ),
        ("a2", "r1", D1, "psi_pd", "warn", "psi", None, None, 0.12, 0.10, T, "acknowledged", T),
    ]
    spark.createDataFrame(alerts, schema(MONITOR_ALERTS_COLUMNS)).writeTo(
        "bi_unit.monitor_alerts"
    ).append()
    comparison = [
        (run, D1, "demo", "challenger", "v2", "v1", "all", 2, flips, flips / 2, 0, 0.0, 0.01)
        + (None,) * 8
        + (T,)
        for run, flips in (("r0", 1), ("r1", 2))
    ]
    spark.createDataFrame(comparison, schema(MONITOR_SHADOW_COLUMNS)).writeTo(
        "bi_unit.monitor_shadow"
    ).append()
    return conf


def rows(spark, sql: str) -> list[tuple]:
    return sorted(tuple(row) for row in spark.sql(sql).collect())


def test_latest_scores_keep_successful_runs_only_and_no_personal_columns(spark, hand_made) -> None:
    view = spark.table("bi_unit.v_latest_scores")
    assert view.columns == [
        "obligor_id",
        "as_of_date",
        "pd",
        "grade",
        "decision",
        "model_version",
        "run_id",
        "scored_at",
    ]
    got = rows(
        spark, "SELECT obligor_id, as_of_date, pd, grade, run_id FROM bi_unit.v_latest_scores"
    )
    # r2 (D2) failed: A and B fall back to D1 (r1); Z's latest success is D0 (r3).
    assert got == [
        ("A", D1, 0.02, "BB", "r1"),
        ("B", D1, 0.001, "AA", "r1"),
        ("Z", D0, 0.2, "CCC", "r3"),
    ]


def test_portfolio_summary_computes_expected_loss_with_segment_lgd(spark, hand_made) -> None:
    got = rows(spark, "SELECT * FROM bi_unit.v_portfolio_summary")
    assert got == [
        (D0, "retail", "BB", 1, 1000.0, 0.03, 0.75, 0.03 * 1000.0 * 0.75),
        (D0, "unknown", "CCC", 1, None, 0.2, 0.45, None),
        (D1, "corporate", "AA", 1, 2_000_000.0, 0.001, 0.45, 0.001 * 2_000_000.0 * 0.45),
        (D1, "retail", "BB", 1, 1000.0, 0.02, 0.75, 0.02 * 1000.0 * 0.75),
    ]


def test_shadow_comparison_keeps_each_dates_current_run(spark, hand_made) -> None:
    got = rows(spark, "SELECT run_id, alias, grade_flips FROM bi_unit.v_shadow_comparison")
    assert got == [("r1", "challenger", 2)]  # r0 was superseded by r1 on D1
    columns = spark.table("bi_unit.v_shadow_comparison").columns
    assert columns == [name for name, _, _, _ in MONITOR_SHADOW_COLUMNS]


def test_alerts_open_and_run_history(spark, hand_made) -> None:
    alerts = rows(spark, "SELECT alert_id, severity, slice_value, value FROM bi_unit.v_alerts_open")
    assert alerts == [("a1", "alert", "retail", 0.31)]
    history = rows(
        spark,
        "SELECT run_id, as_of_date, status, is_current, input_versions FROM bi_unit.v_run_history",
    )
    assert history == [
        ("r0", D1, "success", False, '{"x.portfolio":0}'),
        ("r1", D1, "success", True, '{"x.portfolio":0}'),
        ("r2", D2, "failed", True, '{"x.portfolio":0}'),
        ("r3", D0, "success", True, '{"x.portfolio":0}'),
    ]


def test_tables_carry_comments_properties_and_reader_friendly_protocol(spark, hand_made) -> None:
    for table in documented_tables(hand_made.tables):
        fields = spark.table(table.name).schema.fields
        assert [(f.name, f.metadata.get("comment")) for f in fields] == [
            (name, comment) for name, _, _, comment in table.columns
        ]
        detail = spark.sql(f"DESCRIBE DETAIL {table.name}").first()
        assert detail["description"] == table.comment
        assert {k: detail["properties"].get(k) for k in table.properties} == dict(table.properties)
        # delta-rs and DuckDB read reader version 1 (no deletion vectors, no column mapping).
        assert detail["minReaderVersion"] == 1
    cdf = spark.sql("DESCRIBE DETAIL bi_unit.scored_portfolio").first()["properties"]
    assert cdf["delta.enableChangeDataFeed"] == "true"
    assert cdf["delta.logRetentionDuration"] == "interval 90 days"
    assert cdf["delta.deletedFileRetentionDuration"] == "interval 30 days"


def test_publishing_again_commits_nothing(spark, hand_made) -> None:
    def versions() -> list[int]:
        return [
            spark.sql(f"DESCRIBE HISTORY {t.name} LIMIT 1").first()["version"]
            for t in documented_tables(hand_made.tables)
        ]

    before = versions()
    publish_bi_objects(spark, hand_made)
    assert versions() == before


def test_an_undocumented_table_is_brought_up_to_date(spark) -> None:
    spark.sql("CREATE DATABASE IF NOT EXISTS bi_old")
    old_columns = tuple((n, k, r, "old") for n, k, r, _ in SCORE_RUNS_COLUMNS)
    spark.sql(f"CREATE TABLE bi_old.score_runs ({ddl(old_columns)}) USING DELTA")
    (table,) = [
        t for t in documented_tables(TablesConf(database="bi_old")) if t.name == "bi_old.score_runs"
    ]
    changes = document_table(spark, table)
    assert changes[:2] == [f"properties {sorted(table.properties)}", "table comment"]
    assert len(changes) == 2 + len(SCORE_RUNS_COLUMNS)
    assert document_table(spark, table) == []


def test_lgd_sql_uses_segment_values_then_default() -> None:
    assert lgd_sql(BiConf(lgd=0.4), "seg") == "CAST(0.4 AS DOUBLE)"
    assert lgd_sql(BiConf(lgd=0.4, lgd_by_segment={"retail": 0.7}), "seg") == (
        "CASE seg WHEN 'retail' THEN CAST(0.7 AS DOUBLE) ELSE CAST(0.4 AS DOUBLE) END"
    )


def files_for_lookup(path: str, obligor: str) -> int:
    """Files of the table whose obligor_id min/max range holds the obligor: what a lookup reads."""
    import pyarrow as pa
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pydict()
    return sum(
        lo <= obligor <= hi
        for lo, hi in zip(actions["min.obligor_id"], actions["max.obligor_id"], strict=True)
    )


def test_compaction_zorders_so_a_lookup_reads_one_file(spark, tmp_path) -> None:
    conf = conf_for("bi_zorder", tmp_path)
    spark.sql("CREATE DATABASE IF NOT EXISTS bi_zorder")
    portfolio = spark.createDataFrame(
        [("x", "retail", 1.0)], "obligor_id string, segment string, exposure double"
    )
    overwrite_table(portfolio, "bi_zorder.portfolio")
    publish_bi_objects(spark, conf)
    n = 20_000
    rows_df = (
        spark.range(n)
        .select(
            F.format_string("OBL%07d", F.col("id")).alias("obligor_id"),
            F.lit(D2).alias("as_of_date"),
            (F.col("id") % 997 / 1000.0).alias("pd"),
            F.lit("B").alias("grade"),
            F.lit("review").alias("decision"),
            F.lit(100).alias("n_tokens"),
            F.lit(False).alias("truncated"),
            F.lit(1).alias("n_chunks"),
            F.lit(0).alias("n_filings"),
            F.lit(30).alias("report_age_days"),
            F.lit("m-1").alias("model_version"),
            F.lit("rz").alias("run_id"),
            F.lit(T).alias("scored_at"),
        )
        .repartition(8)  # round-robin: every file spans the whole id range
    )
    rows_df.writeTo("bi_zorder.scored_portfolio").append()
    path = spark.sql("DESCRIBE DETAIL bi_zorder.scored_portfolio").first()["location"]
    path = path.removeprefix("file:")
    assert files_for_lookup(path, "OBL0012345") == 8
    spark.conf.set("spark.databricks.delta.optimize.maxFileSize", str(64 * 1024))
    try:
        metrics = compact_scored_date(spark, conf, as_of=D2)
    finally:
        spark.conf.unset("spark.databricks.delta.optimize.maxFileSize")
    assert metrics["numFilesRemoved"] == 8
    assert metrics["numFilesAdded"] > 1
    assert files_for_lookup(path, "OBL0012345") == 1
    last = spark.sql("DESCRIBE HISTORY bi_zorder.scored_portfolio LIMIT 1").first()
    assert last["operation"] == "OPTIMIZE"
    assert last["operationParameters"]["zOrderBy"] == '["obligor_id"]'
    assert spark.table("bi_zorder.scored_portfolio").count() == n


def test_table_names_reach_sql_quoted(spark) -> None:
    """The SQL text the code writes quotes names: with reserved keywords enforced, a table named
    like one is still read by version and history, while the unquoted name fails to parse."""
    columns = (("a", "INT", False, "a column"),)
    ensure_database(spark, "kw_db")
    ensure_table(spark, "kw_db.select", columns, comment="a table named like a keyword")
    spark.conf.set("spark.sql.ansi.enforceReservedKeywords", "true")
    try:
        assert latest_version(spark, "kw_db.select") == 0
        assert read_version(spark, "kw_db.select", 0, {"a": "int"}).count() == 0
        with pytest.raises(Exception, match="PARSE_SYNTAX_ERROR"):
            spark.sql("SELECT * FROM kw_db.select VERSION AS OF 0")
    finally:
        spark.conf.unset("spark.sql.ansi.enforceReservedKeywords")


def test_quote_name_quotes_each_part() -> None:
    assert quote_name("risk.scored_portfolio") == "`risk`.`scored_portfolio`"
    assert quote_name("db.we`ird") == "`db`.`we``ird`"


def test_bi_users_are_stored_as_salted_pbkdf2_hashes(tmp_path: Path) -> None:
    from riskudf.bi.users import UserError, add_user, remove_user, users, verify

    path = tmp_path / "bi_users"
    add_user(path, "analyst", "first password", iterations=1000)
    add_user(path, "risk.officer@bank", "second password", iterations=1000)
    add_user(path, "analyst", "a new password", iterations=1000)  # replaces the old one
    lines = path.read_text().splitlines()
    assert users(path) == ["risk.officer@bank", "analyst"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert "password" not in path.read_text()
    assert verify(lines[1], "analyst", "a new password")
    assert not verify(lines[1], "analyst", "first password")
    assert lines[0].split(":")[2] != lines[1].split(":")[2]  # salts differ
    assert remove_user(path, "analyst") and users(path) == ["risk.officer@bank"]
    assert not remove_user(path, "analyst")
    for name, password in (
        ("ana lyst", "long enough password"),
        ("a:b", "long enough"),
        ("x", "short"),
    ):
        with pytest.raises(UserError):
            add_user(path, name, password)


def test_bi_auth_settings(tmp_path: Path) -> None:
    from riskudf.bi.server import BiServerError, auth_settings
    from riskudf.bi.users import add_user

    empty = BiConf(password_file=str(tmp_path / "none"))
    with pytest.raises(BiServerError, match="make bi-user"):
        auth_settings(empty)
    add_user(tmp_path / "users", "analyst", "long enough password", iterations=1000)
    assert auth_settings(BiConf(password_file=str(tmp_path / "users"))) == {
        "hive.server2.authentication": "CUSTOM",
        "hive.server2.custom.authentication.class": "riskudf.bi.PasswordFile",
        "riskudf.bi.password.file": str((tmp_path / "users").resolve()),
    }
    ldap = {"url": "ldaps://ldap.bank.example:636", "base_dn": "ou=people,dc=bank,dc=example"}
    assert auth_settings(BiConf(auth="ldap", ldap=ldap)) == {
        "hive.server2.authentication": "LDAP",
        "hive.server2.authentication.ldap.url": "ldaps://ldap.bank.example:636",
        "hive.server2.authentication.ldap.baseDN": "ou=people,dc=bank,dc=example",
    }
    with pytest.raises(ValueError, match=r"needs bi\.ldap"):
        BiConf(auth="ldap")
