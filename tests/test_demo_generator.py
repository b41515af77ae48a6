"""The demo generator's row functions (demo/portfolio.py), in pure python: no Spark."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import demo.portfolio as demo
from demo.portfolio import (
    _COLUMNS,
    DemoSpec,
    _generator,
    filing_rows,
    identity,
    latent_at,
    latent_path,
    outcome_rows,
    portfolio_row,
    report_rows,
)
from riskudf.config import load_config
from riskudf.documents.redact import Redactor
from riskudf.governance import robustness
from riskudf.scoring.reasons import code_of, compile_library

SPEC = DemoSpec(seed=11)
N = 3000


@pytest.fixture(scope="module")
def book() -> dict[str, list]:
    """N obligors' portfolio rows, outcomes and reports."""
    return {
        "portfolio": [portfolio_row(SPEC, i) for i in range(1, N + 1)],
        "outcomes": [outcome_rows(SPEC, i) for i in range(1, N + 1)],
        "reports": [report_rows(SPEC, i) for i in range(1, N + 1)],
    }


def test_the_same_obligor_is_generated_identically() -> None:
    for index in (1, 5, 77):
        for make in (portfolio_row, outcome_rows, report_rows, filing_rows, identity):
            assert make(SPEC, index) == make(DemoSpec(seed=11), index)
    assert report_rows(SPEC, 5) != report_rows(DemoSpec(seed=12), 5)


def test_latent_path_is_stationary_and_shift_moves_every_date() -> None:
    firsts = np.array([latent_path(SPEC, i)[2021] for i in range(1, 2001)])
    lasts = np.array([latent_path(SPEC, i)[2026] for i in range(1, 2001)])
    for values in (firsts, lasts):
        assert abs(values.mean()) < 0.1 and 0.9 < values.std() < 1.1
    assert 0.2 < np.corrcoef(firsts, lasts)[0, 1] < 0.5  # 0.8 ** 5
    path = latent_path(SPEC, 3)
    shifted = DemoSpec(seed=11, shift=1.0)
    for day in (dt.date(2019, 1, 1), dt.date(2024, 11, 28), dt.date(2026, 11, 28)):
        assert latent_at(path, shifted, day) == pytest.approx(latent_at(path, SPEC, day) + 1.0)


def test_outcome_rows_one_per_cohort(book) -> None:
    for rows in book["outcomes"][:200]:
        assert [r["observation_date"] for r in rows] == list(SPEC.cohorts)
        for row in rows:
            assert row["default_12m"] in (0, 1)
            assert 0.0 < row["oracle_pd"] < 1.0
            assert row["obligor_id"] == rows[0]["obligor_id"]


def test_default_rates_are_a_banks(book) -> None:
    retail = np.array([p["segment"] == "retail" for p in book["portfolio"]])
    assert 0.2 < 1 - retail.mean() < 0.4
    for k, cohort in enumerate(SPEC.cohorts):
        defaults = np.array([rows[k]["default_12m"] for rows in book["outcomes"]])
        pds = np.array([rows[k]["oracle_pd"] for rows in book["outcomes"]])
        assert 0.01 < defaults.mean() < 0.05, cohort
        assert defaults[retail].mean() > defaults[~retail].mean(), cohort
        # Spread over the master scale: from below AAA's 0.0005 to CCC and beyond.
        assert np.mean(pds < 0.0005) > 0.03 and np.mean(pds > 0.10) > 0.02, cohort


def test_reports_exist_before_each_cohort_date(book) -> None:
    for day in (*SPEC.cohorts, SPEC.as_of):
        recent = [
            any(dt.timedelta(0) <= day - r["report_date"] < dt.timedelta(days=365) for r in rows)
            for rows in book["reports"]
        ]
        assert np.mean(recent) > 0.85, day
    for rows in book["reports"][:300]:
        assert rows and all(r["report_date"] <= SPEC.as_of for r in rows)


def test_every_cohort_has_the_filings_of_the_lookback() -> None:
    """Documents reach two years (conf's filing_lookback_days) before the first cohort, so the
    oldest cohort's corporates hold as many filings as the newest's."""
    spec = DemoSpec(seed=11, cohorts=(dt.date(2023, 11, 28), dt.date(2025, 11, 28)))
    lookback = dt.timedelta(
        days=load_config(
            Path(__file__).resolve().parents[1] / "conf/base.yaml"
        ).scoring.filing_lookback_days
    )
    corporates = [i for i in range(1, 1500) if portfolio_row(spec, i)["segment"] == "corporate"]
    filings = [filing_rows(spec, i) for i in corporates]
    counts = {
        cohort: np.mean(
            [sum(cohort - lookback < f["filing_date"] <= cohort for f in rows) for rows in filings]
        )
        for cohort in spec.cohorts
    }
    first, last = counts.values()
    assert 0.85 < first / last < 1.15, counts


def test_report_layout_ids_and_subject_line() -> None:
    for index in range(1, 60):
        who = identity(SPEC, index)
        rows = report_rows(SPEC, index)
        assert [r["report_id"] for r in rows] == [
            f"R{index:07d}-{n}" for n in range(1, len(rows) + 1)
        ]
        assert [r["report_date"] for r in rows] == sorted(r["report_date"] for r in rows)
        for row in rows:
            text = row["text"]
            for section in ("PAYMENT HISTORY", "UTILISATION", "INQUIRIES", "PUBLIC RECORDS"):
                assert section in text
            if portfolio_row(SPEC, index)["segment"] == "retail":
                assert (
                    f"Subject: {who['legal_name']}, date of birth {who['birth_date']}, "
                    f"residing at {who['street_address']}." in text
                )
            else:
                assert f"Company: {who['legal_name']}; director {who['contact_name']}." in text
        filings = filing_rows(SPEC, index)
        assert [f["filing_id"] for f in filings] == [
            f"F{index:07d}-{n}" for n in range(1, len(filings) + 1)
        ]
        if portfolio_row(SPEC, index)["segment"] == "retail":
            assert filings == []


def test_documents_are_short_and_never_state_the_latent() -> None:
    words = []
    for index in range(1, 300):
        path = latent_path(SPEC, index)
        texts = [r["text"] for r in report_rows(SPEC, index)]
        texts += [f["text"] for f in filing_rows(SPEC, index)]
        joined = "\n".join(texts)
        for z in path.values():
            assert f"{z:.3f}" not in joined and f"{z:.4f}" not in joined
        for row in outcome_rows(SPEC, index):
            pd_ = row["oracle_pd"]
            assert repr(pd_) not in joined and f"{pd_:.4f}" not in joined
        words += [len(t.split()) for t in texts]
    assert np.median(words) < 120 and max(words) < 200


def test_risky_obligors_read_risky() -> None:
    """Text signals follow the latent: risky-only reason-code phrases (negated wordings of the
    others, e.g. "never been subject to a court judgment", appear in safe text too) are far
    commoner for the riskiest obligors."""
    cues = re.compile(
        r"payments 30 to 59 days past due|collection agency|charged off|beyond terms|"
        r"unemployed|income not verified|did not meet|substantial doubt|current ratio fell|"
        r"at or above their credit limit",
        re.IGNORECASE,
    )
    risky, safe = [], []
    for index in range(1, 800):
        latest = report_rows(SPEC, index)[-1]
        z = latent_at(latent_path(SPEC, index), SPEC, latest["report_date"])
        if z > 1.5:
            risky.append(bool(cues.search(latest["text"])))
        elif z < -0.5:
            safe.append(bool(cues.search(latest["text"])))
    assert np.mean(risky) > np.mean(safe) + 0.3


def test_obligors_of_middling_risk_read_apart(book) -> None:
    """Each report has its segment's section (account conduct or trading) with one line per state
    of CONDUCT, and the worse wording becomes commoner step by step as the latent rises, through
    the middle of the distribution where the rarer signals (arrears, records, covenants) are
    mostly silent."""
    header = {"retail": "ACCOUNT CONDUCT", "corporate": "TRADING"}
    shares: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for index, rows in enumerate(book["reports"][:1500], start=1):
        segment = book["portfolio"][index - 1]["segment"]
        latest = rows[-1]
        lines = latest["text"].split("\n")
        at = lines.index(header[segment])
        size = len(demo.CONDUCT[segment])
        worse = 0
        for line, (_, better, worse_wordings) in zip(
            lines[at + 1 : at + 1 + size], demo.CONDUCT[segment], strict=True
        ):
            assert line in better or line in worse_wordings, latest["report_id"]
            worse += line in worse_wordings
        assert lines[at + 1 + size] == "", latest["report_id"]
        z = latent_at(latent_path(SPEC, index), SPEC, latest["report_date"])
        band = 0 if -1.0 < z < -0.3 else 1 if -0.3 <= z < 0.3 else 2 if 0.3 <= z < 1.0 else -1
        if band >= 0:
            shares[band].append(worse / size)
    means = [float(np.mean(shares[band])) for band in (0, 1, 2)]
    assert means[0] + 0.1 < means[1] < means[2] - 0.1, means


def test_conduct_lines_change_nothing_else_in_a_report(monkeypatch) -> None:
    """The conduct lines come from a stream of their own: a generator without them writes every
    other line of every report the same (signals, dates, later reports' reading noise)."""
    header = {"retail": "ACCOUNT CONDUCT", "corporate": "TRADING"}

    def without_section(text: str, segment: str, size: int) -> list[str]:
        lines = text.split("\n")
        at = lines.index(header[segment])
        return lines[:at] + lines[at + size + 2 :]

    indices = range(1, 60)
    segments = [str(portfolio_row(SPEC, i)["segment"]) for i in indices]
    with_lines = [report_rows(SPEC, i) for i in indices]
    sizes = {segment: len(states) for segment, states in demo.CONDUCT.items()}
    monkeypatch.setattr(demo, "CONDUCT", {"retail": (), "corporate": ()})
    without = [report_rows(SPEC, i) for i in indices]
    assert any(s == "corporate" for s in segments) and any(s == "retail" for s in segments)
    for segment, mine, theirs in zip(segments, with_lines, without, strict=True):
        assert [r["report_date"] for r in mine] == [r["report_date"] for r in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert without_section(a["text"], segment, sizes[segment]) == without_section(
                b["text"], segment, 0
            )


def test_conduct_wordings_carry_their_own_reason_code_and_the_routine_ones_none() -> None:
    """Every sign of strain gets its segment's code from ``code_of`` (not an earlier code such as
    DELINQUENCY, whose clean payment history it would contradict); no routine fact gets any."""
    conf = load_config(Path(__file__).resolve().parents[1] / "conf/base.yaml")
    library = compile_library(conf.reasons.library)
    codes = [reason.code for reason in library]
    intended = {"retail": "FINANCIAL_STRAIN", "corporate": "TRADING_STRAIN"}
    for segment, states in demo.CONDUCT.items():
        for _, routine, strain in states:
            for wording in strain:
                index = code_of(wording, library)
                assert index is not None and codes[index] == intended[segment], wording
            for wording in routine:
                assert code_of(wording, library) is None, wording


def test_conduct_wordings_survive_redaction_and_robustness_edits() -> None:
    """Redaction leaves every conduct wording whole (a rule that took "the address for several
    years" as an address cut two of them), and no wording is one that the robustness tests
    delete or add (delinquency, bankruptcy, going concern), so those tests stay about their own
    sections."""
    conf = load_config(Path(__file__).resolve().parents[1] / "conf/base.yaml")
    redactor = Redactor.of(conf.redaction)
    rules = (robustness.DELINQUENCY, robustness.BANKRUPTCY, robustness.GOING_CONCERN)
    for states in demo.CONDUCT.values():
        for _, routine, strain in states:
            for wording in routine + strain:
                assert redactor.redact(wording)[0] == wording
                assert not any(rule.search(wording) for rule in rules), wording


def test_signs_of_strain_leave_credit_accounts_and_court_records_to_their_sections() -> None:
    """Payment history and public records state how credit accounts were paid and what courts
    ordered; a sign of strain that spoke of a missed loan payment, a called guarantor, a
    repossession or a court order would contradict a clean history or clean records in the same
    report, and one that named an employer would contradict an unemployed subject's employment
    section. The signs are about bills, behaviour and the business's own dealings instead."""
    credit = re.compile(
        r"repossess|guarantor was called|order to recover|court|judg|bailiff|enforcement|"
        r"loan company|instalment|buy-now-pay-later|mobile phone contract|employer",
        re.IGNORECASE,
    )
    for states in demo.CONDUCT.values():
        for _, _, strain in states:
            for wording in strain:
                assert not credit.search(wording), wording


def test_conduct_wordings_never_repeat_in_a_report(book) -> None:
    """Three lines of one report are three different facts; each wording is in one pool only."""
    header = {"retail": "ACCOUNT CONDUCT", "corporate": "TRADING"}
    for segment, states in demo.CONDUCT.items():
        pools = [w for _, routine, strain in states[:1] for w in routine + strain]
        assert len(pools) == len(set(pools)), segment
    for index, rows in enumerate(book["reports"], start=1):
        segment = book["portfolio"][index - 1]["segment"]
        size = len(demo.CONDUCT[segment])
        for row in rows:
            lines = row["text"].split("\n")
            at = lines.index(header[segment])
            section = lines[at + 1 : at + 1 + size]
            assert len(set(section)) == size, row["report_id"]


def test_generator_batches_have_the_schema_columns() -> None:
    """What mapInPandas runs, fed by hand: outcomes have one row per obligor and cohort."""
    ids = [pd.DataFrame({"id": [1, 2, 3]}), pd.DataFrame({"id": [4]})]
    for kind in ("portfolio", "outcomes", "reports", "filings"):
        frames = list(_generator(SPEC, kind)(iter(ids)))
        assert [list(f.columns) for f in frames] == [_COLUMNS[kind]] * 2
        if kind == "outcomes":
            assert sum(len(f) for f in frames) == 4 * len(SPEC.cohorts)


def test_most_risky_wordings_carry_a_reason_code_pattern() -> None:
    library = load_config(Path(__file__).resolve().parents[1] / "conf/base.yaml").reasons.library
    patterns = [re.compile(p, re.IGNORECASE) for code in library for p in code.patterns]
    for name in (
        "PAID_LATE",
        "SEVERE",
        "UTILISATION",
        "MAXED_OUT",
        "INQUIRIES",
        "RETAIL_RECORD",
        "UNEMPLOYED",
        "BEYOND_TERMS",
        "FACILITIES",
        "BUSINESS_RECORD",
        "BUSINESS_INQUIRIES",
        "LIQUIDITY_WEAK",
        "COVENANT_BREACH",
        "GOING_CONCERN",
        "LITIGATION",
        "RETAIL_STRAIN",
        "BUSINESS_STRAIN",
    ):
        wordings = getattr(demo, name)
        found = [any(p.search(w) for p in patterns) for w in wordings]
        assert np.mean(found) > 0.5, name
