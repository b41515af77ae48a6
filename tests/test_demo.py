from __future__ import annotations

import numpy as np

from demo.portfolio import DemoSpec, filing_rows, outcome_rows, portfolio_row, report_rows

SPEC = DemoSpec(seed=11)


def test_generation_is_seeded_per_obligor() -> None:
    assert report_rows(SPEC, 5) == report_rows(SPEC, 5)
    assert report_rows(SPEC, 5) != report_rows(DemoSpec(seed=12), 5)
    assert portfolio_row(SPEC, 5) == portfolio_row(SPEC, 5)


def test_reports_have_sections_and_dates_before_as_of() -> None:
    for index in range(1, 40):
        for row in report_rows(SPEC, index):
            assert row["report_date"] <= SPEC.as_of
            for section in ("PAYMENT HISTORY", "UTILISATION", "INQUIRIES", "PUBLIC RECORDS"):
                assert section in row["text"]


def test_filings_only_for_corporates_and_default_rate_is_plausible() -> None:
    n = 2000
    segments = [portfolio_row(SPEC, i)["segment"] for i in range(1, n + 1)]
    for i, segment in enumerate(segments[:200], start=1):
        if segment == "retail":
            assert filing_rows(SPEC, i) == []
    defaults = np.array([outcome_rows(SPEC, i)[0]["default_12m"] for i in range(1, n + 1)])
    assert 0.01 < defaults.mean() < 0.05  # an annual default rate of a loan book
    assert 0.2 < np.mean([s == "corporate" for s in segments]) < 0.4
