from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from riskudf.documents.assemble import assemble_documents
from riskudf.documents.quarantine import (
    flag_records,
    flag_text,
    record_rows,
    split_documents,
    split_portfolio,
    text_problem,
)
from riskudf.scoring.pipeline import Tally, reconcile, tally

D = dt.date


def test_text_problem_tells_empty_and_binary_from_text(spark) -> None:
    cases = {
        "null": None,
        "empty": "",
        "spaces": " \n\t \r",
        "invisible": "\u200b\u00a0\ufeff\u3000",
        "plain": "Delinquencies: 2 in the last 12 months.",
        "unicode": "Société Générale — 東京 — Ünïcødé 🙂 עברית",
        "nul": "paid as agreed\x00",
        "lossy decode": "caf\ufffd au lait",
        "some controls": "x" * 300 + "\x01",
        "many controls": "x" * 50 + "\x01\x02",
        "layout": "line one\tcol\r\nline two\x0c",
    }
    df = spark.createDataFrame(list(cases.items()), "name string, text string")
    got = {
        r["name"]: r["p"]
        for r in df.select("name", text_problem(F.col("text")).alias("p")).collect()
    }
    assert got == {
        "null": "EMPTY_TEXT",
        "empty": "EMPTY_TEXT",
        "spaces": "EMPTY_TEXT",
        "invisible": "EMPTY_TEXT",
        "plain": None,
        "unicode": None,
        "nul": "NOT_TEXT",
        "lossy decode": "NOT_TEXT",
        "some controls": None,
        "many controls": "NOT_TEXT",
        "layout": None,
    }


def test_flag_records_and_record_rows(spark) -> None:
    filings = spark.createDataFrame(
        [
            ("f1", "o1", D(2026, 1, 1), "ok"),
            ("f2", "o1", D(2026, 1, 2), "dup a"),
            ("f2", "o2", D(2026, 1, 3), "dup b"),
            ("f3", "o2", D(2027, 1, 1), "future"),
            (None, "o2", D(2026, 1, 1), "no key"),
            ("f4", "o3", None, "no date"),
            ("f5", "o3", D(2026, 2, 1), "\x00\x01binary"),
            ("f6", "o3", D(2020, 2, 1), ""),
        ],
        "filing_id string, obligor_id string, filing_date date, text string",
    )
    flagged = flag_text(
        flag_records(filings, key="filing_id", date_col="filing_date", today=D(2026, 11, 29)),
        applies=F.col("filing_date") > F.lit(D(2025, 1, 1)),
    )
    rows = record_rows(flagged, source_table="db.filings", key="filing_id").collect()
    got = sorted(
        (r["record_key"] or "", r["obligor_id"], r["reason_code"], r["detail"]) for r in rows
    )
    assert got == [
        ("", "o2", "NULL_KEY", "filing_id is null or blank"),
        ("f2", "o1", "DUPLICATE_KEY", "filing_id appears 2 times"),
        ("f2", "o2", "DUPLICATE_KEY", "filing_id appears 2 times"),
        ("f3", "o2", "FUTURE_DATE", "filing_date 2027-01-01 is after the run date 2026-11-29"),
        ("f4", "o3", "NULL_DATE", "filing_date is null"),
        ("f5", "o3", "NOT_TEXT", "8 characters, 2 of them NUL, replacement or control characters"),
    ]
    assert {r["source_table"] for r in rows} == {"db.filings"}
    # f6 is empty but outside the window the text rule applies to: not flagged.
    assert flagged.where(F.col("filing_id") == "f6").first()["problem"] is None


def test_split_portfolio_sets_aside_null_and_repeated_keys(spark) -> None:
    portfolio = spark.createDataFrame(
        [("o1", "retail"), ("o2", "retail"), ("o2", "corporate"), (None, "retail"), (" ", "x")],
        "obligor_id string, segment string",
    )
    usable, rows = split_portfolio(portfolio, source_table="db.portfolio")
    assert sorted(r["obligor_id"] for r in usable.collect()) == ["o1"]
    got = sorted((r["obligor_id"] or "", r["reason_code"], r["detail"]) for r in rows.collect())
    assert got == [
        ("", "NULL_KEY", "obligor_id is null or blank"),
        ("", "NULL_KEY", "obligor_id is null or blank"),
        ("o2", "DUPLICATE_KEY", "obligor_id appears 2 times"),
    ]


def test_split_documents_gives_each_obligor_one_outcome(spark) -> None:
    as_of = D(2026, 11, 28)
    portfolio = spark.createDataFrame(
        [(f"o{i}", "retail") for i in range(1, 6)], "obligor_id string, segment string"
    )
    reports = spark.createDataFrame(
        [
            ("r1", "o1", D(2026, 1, 1), "fine"),
            ("r2old", "o2", D(2025, 1, 1), "older fine report"),
            ("r2", "o2", D(2026, 1, 1), "   "),
            ("r3", "o3", D(2026, 1, 1), "x" * 500),
            ("r5", "o5", D(2026, 1, 1), "bad\ufffd"),
        ],
        "report_id string, obligor_id string, report_date date, text string",
    )
    filings = spark.createDataFrame(
        [], "filing_id string, obligor_id string, filing_date date, form_type string, text string"
    )
    docs = assemble_documents(portfolio, reports, filings, as_of=as_of, filing_lookback_days=730)
    scorable, rows = split_documents(docs, source_table="db.portfolio", as_of=as_of, max_chars=400)
    assert [r["obligor_id"] for r in scorable.collect()] == ["o1"]
    got = sorted((r["obligor_id"], r["reason_code"], r["detail"]) for r in rows.collect())
    assert got == [
        (
            "o2",
            "EMPTY_TEXT",
            "latest report r2: 3 characters, 0 of them NUL, replacement or control characters",
        ),
        ("o3", "TOO_LARGE", "document has 527 characters, the cap is 400"),
        ("o4", "NO_REPORT", "no credit report dated on or before 2026-11-28"),
        (
            "o5",
            "NOT_TEXT",
            "latest report r5: 4 characters, 1 of them NUL, replacement or control characters",
        ),
    ]


def test_reconcile_counts_missing_repeated_and_unknown(spark) -> None:
    portfolio = spark.createDataFrame(
        [("a",), ("b",), ("c",), ("d",), (None,)], "obligor_id string"
    )
    quarantine = "obligor_id string, reason_code string"
    good = reconcile(
        portfolio,
        spark.createDataFrame([("a",), ("b",)], "obligor_id string"),
        spark.createDataFrame(
            [("c", "NO_REPORT"), ("d", "EMPTY_TEXT"), (None, "NULL_KEY")], quarantine
        ),
    )
    assert good.holds
    assert (good.obligors, good.scored, good.quarantined) == (5, 2, 3)

    bad = reconcile(
        portfolio,
        spark.createDataFrame([("a",), ("b",), ("x",)], "obligor_id string"),
        spark.createDataFrame([("b", "NOT_SCORED"), (None, "NULL_KEY")], quarantine),
    )
    assert not bad.holds
    assert (bad.missing, bad.repeated, bad.unknown) == (2, 1, 1)
    assert sorted(bad.examples) == ["b", "c", "d", "x"]

    # Counts the caller already has replace the two counts.
    counted = reconcile(
        portfolio,
        spark.createDataFrame([("a",), ("b",)], "obligor_id string"),
        spark.createDataFrame(
            [("c", "NO_REPORT"), ("d", "EMPTY_TEXT"), (None, "NULL_KEY")], quarantine
        ),
        counted=(7, 8),
    )
    assert (counted.obligors, counted.rows, counted.scored, counted.quarantined) == (5, 5, 7, 8)

    # An empty portfolio, nothing scored or quarantined: every count is 0.
    nothing = reconcile(
        portfolio.limit(0),
        spark.createDataFrame([], "obligor_id string"),
        spark.createDataFrame([], quarantine),
    )
    assert nothing.holds
    assert (nothing.obligors, nothing.rows, nothing.scored, nothing.quarantined) == (0, 0, 0, 0)


def test_tally_counts_rows_carried_grades_and_redactions_in_one_pass(spark) -> None:
    results = spark.createDataFrame(
        [
            ("a", 0.01, "A", True, [1, 0]),
            ("b", 0.02, "A", False, [0, 2]),
            ("c", 0.30, "B", True, None),
            ("d", None, None, False, [3, 1]),
            ("e", None, None, None, [0, 0]),
            ("f", 0.50, None, False, [0, 0]),  # scored without a grade: counted under None
        ],
        "obligor_id string, pd double, grade string, carried_forward boolean, "
        "redactions array<int>",
    )
    assert tally(results, ("NAME", "ADDRESS")) == Tally(
        rows=6,
        carried=2,
        scored=4,
        grade_counts={"A": 2, "B": 1, None: 1},
        redactions={"NAME": 4, "ADDRESS": 3},
    )
    assert tally(results.drop("redactions"), ()).redactions == {}
