from __future__ import annotations

import datetime as dt

from riskudf.documents.assemble import assemble_documents

D = dt.date
AS_OF = D(2026, 11, 28)


def frames(spark):
    portfolio = spark.createDataFrame(
        [
            ("o1", "retail", 100.0),
            ("o2", "corporate", 5000.0),
            ("o3", "corporate", 10.0),
            ("o4", "retail", 1.0),
        ],
        "obligor_id string, segment string, exposure double",
    )
    reports = spark.createDataFrame(
        [
            ("r1a", "o1", D(2025, 1, 1), "old report"),
            ("r1b", "o1", D(2026, 6, 1), "latest report"),
            ("r1c", "o1", D(2026, 11, 29), "report after the as-of date"),
            ("r2a", "o2", D(2026, 11, 28), "same day A"),
            ("r2b", "o2", D(2026, 11, 28), "same day B"),
            ("r9", "o9", D(2026, 1, 1), "not in portfolio"),
        ],
        "report_id string, obligor_id string, report_date date, text string",
    )
    filings = spark.createDataFrame(
        [
            ("f1", "o2", D(2026, 11, 28), "10-Q", "on the as-of date"),
            ("f2", "o2", D(2024, 11, 29), "10-K", "first day inside the lookback"),
            ("f3", "o2", D(2024, 11, 28), "10-K", "just outside the lookback"),
            ("f4", "o2", D(2026, 11, 30), "8-K", "after the as-of date"),
            ("f5", "o3", D(2026, 3, 1), "8-K", "only a filing"),
        ],
        "filing_id string, obligor_id string, filing_date date, form_type string, text string",
    )
    return portfolio, reports, filings


def test_one_document_per_obligor_as_of_the_date(spark) -> None:
    portfolio, reports, filings = frames(spark)
    docs = assemble_documents(portfolio, reports, filings, as_of=AS_OF, filing_lookback_days=730)
    rows = {row["obligor_id"]: row.asDict() for row in docs.collect()}
    assert sorted(rows) == ["o1", "o2", "o3", "o4"]
    # Several reports: the latest on or before the as-of date; the later one is ignored.
    assert rows["o1"] == {
        "obligor_id": "o1",
        "segment": "retail",
        "report_id": "r1b",
        "report_date": D(2026, 6, 1),
        "report_age_days": 180,
        "report_problem": None,
        "report_problem_detail": None,
        "n_filings": 0,
        "document": "[CREDIT REPORT 2026-06-01]\nlatest report",
    }
    # Same-day tie goes to the higher report_id; filings inside (as_of - 730, as_of], newest first.
    assert rows["o2"]["report_id"] == "r2b"
    assert rows["o2"]["n_filings"] == 2
    assert rows["o2"]["document"] == (
        "[CREDIT REPORT 2026-11-28]\nsame day B\n\n"
        "[FILING 10-Q 2026-11-28]\non the as-of date\n\n"
        "[FILING 10-K 2024-11-29]\nfirst day inside the lookback"
    )
    # No report: filings only. Neither: an empty document, still one row.
    assert (rows["o3"]["report_id"], rows["o3"]["n_filings"]) == (None, 1)
    assert rows["o3"]["document"] == "[FILING 8-K 2026-03-01]\nonly a filing"
    assert (rows["o4"]["report_id"], rows["o4"]["n_filings"], rows["o4"]["document"]) == (
        None,
        0,
        "",
    )


def test_lookback_is_configurable(spark) -> None:
    portfolio, reports, filings = frames(spark)
    docs = assemble_documents(portfolio, reports, filings, as_of=AS_OF, filing_lookback_days=1)
    counts = {row["obligor_id"]: row["n_filings"] for row in docs.collect()}
    assert counts == {"o1": 0, "o2": 1, "o3": 0, "o4": 0}


def test_earlier_as_of_moves_the_cut(spark) -> None:
    portfolio, reports, filings = frames(spark)
    docs = assemble_documents(
        portfolio, reports, filings, as_of=D(2025, 6, 1), filing_lookback_days=730
    )
    picked = {row["obligor_id"]: row["report_id"] for row in docs.collect()}
    assert picked == {"o1": "r1a", "o2": None, "o3": None, "o4": None}
