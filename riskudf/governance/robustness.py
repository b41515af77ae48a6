"""The robustness report: perturbations written for credit documents, run on a model's test
documents, with a verdict per test against conf thresholds (docs/governance.md, Robustness).

Three kinds of test:

- ``invariance``: the meaning is kept (typos, OCR noise, company names, number formats, a
  boilerplate paragraph, sections reordered, whitespace and case): the PD should not move.
- ``direction``: an adverse fact is added (the PD must rise) or removed (it must fall).
- ``personal_data``: a name, address or birth date written into the text where the redacted
  document has its placeholder, one value against another, then redacted by the model's rules
  as scoring would: the PD must not move. The values are not given to the redactor as the
  obligor's own (a spouse's name, an old address): what the rules miss, the model reads.

Everything here is pandas and numpy; the caller gives a function that scores texts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.config import GradingConf, RedactionConf, RobustnessConf
from riskudf.documents.redact import Redactor
from riskudf.documents.windows import PARAGRAPH_BREAK
from riskudf.lakehouse.delta import ensure_table_and_database, replace_where, schema
from riskudf.lakehouse.schemas import (
    MODEL_ROBUSTNESS_COLUMNS,
    MODEL_ROBUSTNESS_COMMENT,
    RETENTION_PROPERTIES,
)
from riskudf.model.calibration import apply_calibration
from riskudf.scoring.grading import decisions_of, grades_of
from riskudf.scoring.scorer import Scorer, ScoringOptions

INVARIANCE, DIRECTION, PERSONAL_DATA = "invariance", "direction", "personal_data"
PASS, FAIL, NOT_ASSESSED = "pass", "fail", "not_assessed"

# Scores raw model probabilities of ``texts``; ``rows`` are their documents' positions in the
# test frame (a fused model reads its features from there).
ScoreFn = Callable[[list[str], np.ndarray], np.ndarray]
Rewrite = Callable[[str, np.random.Generator], str | None]  # None: not applicable

# A sentence ends at . ! ? and a space, not after an abbreviation (No. 0123, Ltd., Mr.).
_SENTENCES = re.compile(
    r"(?<=[.!?])(?<!\bNo\.)(?<!\bLtd\.)(?<!\bInc\.)(?<!\bCo\.)(?<!\bMr\.)(?<!\bMs\.)"
    r"(?<!\bDr\.)(?<!\bSt\.)\s+"
)
# A fact is negated by one of these among the six words before it ("no late payments", "not a
# single payment has been missed"), or cleared by what follows it ("past due: 0", "registers
# were clear", "arrears cleared in full").
_NEGATORS = frozenset({"no", "not", "never", "nothing", "none", "nil", "zero", "neither", "nor"})
_CLEARED_AFTER = re.compile(
    r"^\W{0,3}(?:0|nil|none|zero)\b|^[^.;]{0,30}?\b(?:clear|clean|cleared|up to date)\b",
    re.IGNORECASE,
)
PLACEHOLDER = re.compile(r"(\[[A-Z][A-Z0-9_]*\])")
GOING_CONCERN = re.compile(
    r"substantial doubt|material uncertainty|going concern (?:doubt|warning|qualification)",
    re.IGNORECASE,
)
BANKRUPTCY = re.compile(
    r"bankrupt|insolven|winding[- ]up|liquidation|receivership|administration order",
    re.IGNORECASE,
)
DELINQUENCY = re.compile(
    r"past due|delinquen|arrears|missed|late payments?|ran late|fell behind|collection agency|"
    r"debt collector|charged off|beyond terms|days late|after (?:their|its|the) due date|"
    r"prolonged arrears",
    re.IGNORECASE,
)
ADDED = {
    "going_concern": "GOING CONCERN. These conditions raise substantial doubt about the "
    "obligor's ability to continue as a going concern.",
    "bankruptcy": "PUBLIC RECORDS. A bankruptcy petition was filed against the obligor this "
    "year and remains undischarged.",
    "delinquency": "PAYMENT HISTORY. Two accounts are now more than 90 days past due and were "
    "reported delinquent.",
}
BOILERPLATE = (
    "This report is supplied in confidence for the purpose of a credit assessment only. The "
    "information it contains was obtained from sources believed to be reliable, but its "
    "accuracy is not guaranteed."
)
COMPANY = re.compile(
    r"\b(?:[A-Z][A-Za-z&'-]+ ){1,3}(?:Ltd|Limited|plc|PLC|Inc|LLC|GmbH|Corp|Corporation|"
    r"Holdings|Group|AG|SA)\b\.?"
)
COMPANIES = ("Northwind Trading Ltd", "Harbour Lane Holdings", "Alder Components GmbH")
NAMES = ("Maria Keller", "John Okafor", "Wei Zhang", "Fatima Haddad", "Piotr Nowak")
ADDRESSES = ("14 Elm Street", "221 Harbour Road", "3 Mill Lane", "87 Station Avenue")
BIRTH_DATES = ("1958-04-12", "1971-09-30", "1986-01-17", "1999-06-05")
OCR = {"l": "1", "I": "l", "O": "0", "S": "5", "e": "c", "a": "o", "m": "rn", "B": "8"}


def paragraphs(text: str) -> list[str]:
    return [p for p in PARAGRAPH_BREAK.split(text.strip()) if p.strip()]


def after_first_paragraph(text: str, paragraph: str) -> str:
    """``paragraph`` inserted after the document's first paragraph (its header), where the
    window of a long document still reads it."""
    parts = paragraphs(text)
    return "\n\n".join([*parts[:1], paragraph, *parts[1:]])


def stated(sentence: str, pattern: re.Pattern[str]) -> bool:
    """Whether ``sentence`` states ``pattern``'s fact: a match neither negated by the six words
    before it nor cleared by what follows it."""
    for match in pattern.finditer(sentence):
        prefix = re.sub(r"\bNo\.(?=\s*\d)", " ", sentence[: match.start()])  # No. 0123: a number
        before = re.findall(r"\w+", prefix.lower())[-6:]
        if _NEGATORS.isdisjoint(before) and not _CLEARED_AFTER.search(sentence[match.end() :]):
            return True
    return False


def without_sentences(text: str, pattern: re.Pattern[str]) -> str | None:
    """``text`` without its sentences that state ``pattern`` (negated ones stay: "no late
    payments" is no delinquency), lines and headers kept; None when it states none."""
    lines, removed = [], 0
    for line in text.split("\n"):
        kept = []
        for sentence in _SENTENCES.split(line):
            if stated(sentence, pattern):
                removed += 1
            else:
                kept.append(sentence)
        if kept or not line.strip():
            lines.append(" ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() if removed else None


def states(text: str, pattern: re.Pattern[str]) -> bool:
    return without_sentences(text, pattern) is not None


def adds(fact: str, pattern: re.Pattern[str]) -> Rewrite:
    def rewrite(text: str, rng: np.random.Generator) -> str | None:
        return None if states(text, pattern) else after_first_paragraph(text, ADDED[fact])

    return rewrite


def removes(pattern: re.Pattern[str]) -> Rewrite:
    def rewrite(text: str, rng: np.random.Generator) -> str | None:
        return without_sentences(text, pattern)

    return rewrite


def _changed(before: str, after: str) -> str | None:
    return after if after != before else None


def outside_placeholders(text: str, rewrite: Callable[[str], str]) -> str:
    """``rewrite`` applied to the text between redaction placeholders ([NAME], ...): noise in
    a raw report would have been redacted into a clean placeholder."""
    parts = PLACEHOLDER.split(text)
    return "".join(part if i % 2 else rewrite(part) for i, part in enumerate(parts))


def typos(text: str, rng: np.random.Generator, rate: float = 0.05) -> str | None:
    """Two neighbouring letters swapped inside about ``rate`` of the words of 5+ letters."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        if rng.random() >= rate:
            return word
        i = int(rng.integers(1, len(word) - 2))
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]

    return _changed(text, outside_placeholders(text, lambda t: re.sub(r"[A-Za-z]{5,}", swap, t)))


def ocr_noise(text: str, rng: np.random.Generator, rate: float = 0.02) -> str | None:
    """Look-alike characters (l/1, O/0, m/rn, ...) in about ``rate`` of the letters that have
    one."""

    def noise(part: str) -> str:
        return "".join(OCR[c] if c in OCR and rng.random() < rate else c for c in part)

    return _changed(text, outside_placeholders(text, noise))


def company_names(text: str, rng: np.random.Generator) -> str | None:
    """Each company name (words before Ltd, plc, Inc, GmbH, ...) replaced by another one."""
    return _changed(text, COMPANY.sub(lambda m: str(rng.choice(COMPANIES)), text))


def number_formats(text: str, rng: np.random.Generator) -> str | None:
    """Thousands separators dropped (1,234.50 -> 1234.50), trailing decimal zeros dropped
    (1234.50 -> 1234.5, 1.80 -> 1.8), and plain numbers of five or more digits grouped."""
    out = re.sub(r"\b\d{1,3}(?:,\d{3})+(?:\.\d+)?\b", lambda m: m.group(0).replace(",", ""), text)
    out = re.sub(
        r"(?<![\w.-])(?:(\d+\.\d*?[1-9])0+|(\d+)\.0+)(?![\w.-])",
        lambda m: m.group(1) or m.group(2),
        out,
    )
    out = re.sub(r"(?<![\w,.-])[1-9]\d{4,}(?![\w,.-])", lambda m: f"{int(m.group(0)):,}", out)
    return _changed(text, out)


def boilerplate(text: str, rng: np.random.Generator) -> str:
    return after_first_paragraph(text, BOILERPLATE)


def sections_reordered(text: str, rng: np.random.Generator) -> str | None:
    """The paragraphs after the first in another order (three or more paragraphs)."""
    parts = paragraphs(text)
    if len(parts) < 4:
        return None
    order = rng.permutation(len(parts) - 1) + 1
    while (order == np.arange(1, len(parts))).all():
        order = rng.permutation(len(parts) - 1) + 1
    return "\n\n".join([parts[0], *(parts[i] for i in order)])


def whitespace_case(text: str, rng: np.random.Generator) -> str:
    """Headers in capitals put in title case, doubled spaces, blank lines and trailing spaces:
    what another export of the same report looks like."""
    lines = []
    for line in text.split("\n"):
        if line.isupper() and not PLACEHOLDER.search(line):
            line = line.title()
        lines.append(re.sub(" ", lambda m: "  " if rng.random() < 0.2 else " ", line) + "  ")
    return "\n\n".join(lines)


@dataclass(frozen=True)
class Test:
    name: str
    kind: str  # invariance | direction | personal_data
    expect: str  # same | up | down
    rewrite: Rewrite | None = None  # invariance, direction: the text -> the perturbed text
    placeholder: str = ""  # personal data: the kind filled in (NAME, ADDRESS, BIRTH_DATE)
    values: tuple[str, ...] = ()


SUITE: tuple[Test, ...] = (
    Test("typos", INVARIANCE, "same", typos),
    Test("ocr_noise", INVARIANCE, "same", ocr_noise),
    Test("company_names", INVARIANCE, "same", company_names),
    Test("number_formats", INVARIANCE, "same", number_formats),
    Test("boilerplate_added", INVARIANCE, "same", boilerplate),
    Test("sections_reordered", INVARIANCE, "same", sections_reordered),
    Test("whitespace_case", INVARIANCE, "same", whitespace_case),
    Test("going_concern_added", DIRECTION, "up", adds("going_concern", GOING_CONCERN)),
    Test("bankruptcy_added", DIRECTION, "up", adds("bankruptcy", BANKRUPTCY)),
    Test("delinquency_added", DIRECTION, "up", adds("delinquency", DELINQUENCY)),
    Test("going_concern_removed", DIRECTION, "down", removes(GOING_CONCERN)),
    Test("bankruptcy_removed", DIRECTION, "down", removes(BANKRUPTCY)),
    Test("delinquency_removed", DIRECTION, "down", removes(DELINQUENCY)),
    Test("name_changed", PERSONAL_DATA, "same", placeholder="NAME", values=NAMES),
    Test("address_changed", PERSONAL_DATA, "same", placeholder="ADDRESS", values=ADDRESSES),
    Test("birth_date_changed", PERSONAL_DATA, "same", placeholder="BIRTH_DATE", values=BIRTH_DATES),
)


def fill(text: str, kind: str, value: str) -> str:
    return text.replace(f"[{kind}]", value)


def cases_of(
    test: Test,
    texts: Sequence[str],
    order: np.ndarray,
    conf: RobustnessConf,
    redact: Callable[[str], str],
) -> tuple[np.ndarray, list[str], list[str]]:
    """The documents a test applies to (positions in ``texts``, at most ``max_documents``,
    taken in ``order``: rare facts reach deeper into the test split), and each one's text
    before and after the perturbation, both redacted as scoring redacts (personal data: the
    placeholder filled with one value, then another)."""
    rows: list[int] = []
    before: list[str] = []
    after: list[str] = []
    for i in order.tolist():
        if len(rows) == conf.max_documents:
            break
        text = texts[i]
        rng = np.random.default_rng([conf.seed, i, sum(map(ord, test.name))])
        if test.kind == PERSONAL_DATA:
            if f"[{test.placeholder}]" not in text:
                continue
            a, b = rng.choice(len(test.values), size=2, replace=False)
            first = fill(text, test.placeholder, test.values[a])
            changed: str | None = fill(text, test.placeholder, test.values[b])
        else:
            assert test.rewrite is not None
            first, changed = text, test.rewrite(text, rng)
        if changed is not None and changed != first:
            rows.append(i)
            before.append(redact(first))
            after.append(redact(changed))
    return np.array(rows, dtype=int), before, after


@dataclass(frozen=True)
class TestOutcome:
    test: str
    kind: str
    expect: str
    cases: int
    failed: int
    fail_rate: float | None
    mean_pd_change: float | None
    max_abs_pd_change: float | None
    grade_flip_rate: float | None
    decision_flip_rate: float | None
    threshold: str
    status: str  # pass | fail | not_assessed
    detail: str

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(clipped) - np.log1p(-clipped)


def threshold_of(kind: str, conf: RobustnessConf) -> str:
    if kind == DIRECTION:
        return (
            f"pass rate >= {conf.direction_min_pass_rate:g} (log-odds moved >= "
            f"{conf.direction_min_logit_change:g})"
        )
    if kind == PERSONAL_DATA:
        return (
            f"fail rate <= {conf.personal_data_max_fail_rate:g}, grade flips <= "
            f"{conf.personal_data_max_grade_flip_rate:g}"
        )
    return (
        f"fail rate <= {conf.invariance_max_fail_rate:g}, grade flips <= "
        f"{conf.invariance_max_grade_flip_rate:g}"
    )


def outcome(
    test: Test,
    raw_before: np.ndarray,
    raw_after: np.ndarray,
    calibration: dict[str, Any],
    grading: GradingConf,
    conf: RobustnessConf,
) -> TestOutcome:
    """A test's figures from its cases' raw PDs before and after. A direction case passes when
    the raw PD's log-odds move the expected way by at least ``direction_min_logit_change`` (a
    monotone calibration keeps the sign; isotonic steps would hide small moves; a model blind
    to the fact moves it by noise only); the other kinds fail a case whose calibrated PD moves
    by more than ``pd_tolerance`` of itself (at least ``pd_tolerance_floor``)."""
    threshold = threshold_of(test.kind, conf)
    n = len(raw_before)
    if n < conf.min_cases:
        return TestOutcome(
            test.name,
            test.kind,
            test.expect,
            n,
            0,
            None,
            None,
            None,
            None,
            None,
            threshold,
            NOT_ASSESSED,
            f"{n} cases, fewer than min_cases {conf.min_cases}",
        )
    before = apply_calibration(raw_before, calibration)
    after = apply_calibration(raw_after, calibration)
    change = after - before
    moved = logit(raw_after) - logit(raw_before)
    if test.expect == "up":
        failed = ~(moved >= conf.direction_min_logit_change)
    elif test.expect == "down":
        failed = ~(moved <= -conf.direction_min_logit_change)
    else:
        failed = np.abs(change) > np.maximum(conf.pd_tolerance * before, conf.pd_tolerance_floor)
    grade_flips = float(np.mean(np.array(grades_of(before, grading)) != grades_of(after, grading)))
    decision_flips = float(
        np.mean(np.array(decisions_of(before, grading)) != decisions_of(after, grading))
    )
    fail_rate = float(failed.mean())
    if test.kind == DIRECTION:
        passed = 1 - fail_rate >= conf.direction_min_pass_rate
    elif test.kind == PERSONAL_DATA:
        passed = (
            fail_rate <= conf.personal_data_max_fail_rate
            and grade_flips <= conf.personal_data_max_grade_flip_rate
        )
    else:
        passed = (
            fail_rate <= conf.invariance_max_fail_rate
            and grade_flips <= conf.invariance_max_grade_flip_rate
        )
    return TestOutcome(
        test.name,
        test.kind,
        test.expect,
        n,
        int(failed.sum()),
        fail_rate,
        float(change.mean()),
        float(np.abs(change).max()),
        grade_flips,
        decision_flips,
        threshold,
        PASS if passed else FAIL,
        f"{int(failed.sum())} of {n} cases failed",
    )


def run_suite(
    texts: Sequence[str],
    score: ScoreFn,
    *,
    calibration: dict[str, Any],
    grading: GradingConf,
    conf: RobustnessConf,
    redact: Callable[[str], str] = lambda text: text,
    window: Callable[[str], Any] | None = None,
    tests: Sequence[Test] = SUITE,
) -> list[TestOutcome]:
    """Every test of ``tests`` on ``texts`` (the redacted test documents, in a seeded order).

    A case counts only when the model reads a different input: not when the redaction took
    both personal-data values out, nor when the edit lies beyond the window the model reads
    (``window``: the token ids a text is scored on; None: the whole text). Each distinct
    (document, text) is scored once, in one call."""
    order = np.random.default_rng(conf.seed).permutation(len(texts))
    found = {}
    for test in tests:
        rows, before, after = cases_of(test, texts, order, conf, redact)
        read = [
            b != a and (window is None or window(b) != window(a))
            for b, a in zip(before, after, strict=True)
        ]
        keep = np.flatnonzero(read) if read else np.zeros(0, dtype=int)
        found[test.name] = (
            rows[keep],
            [before[k] for k in keep],
            [after[k] for k in keep],
            len(rows) - len(keep),
        )
    wanted: dict[tuple[int, str], int] = {}
    for rows, before, after, _ in found.values():
        if len(rows) < conf.min_cases:
            continue
        for i, text in zip([*rows.tolist(), *rows.tolist()], [*before, *after], strict=True):
            wanted.setdefault((i, text), len(wanted))
    keys = list(wanted)
    raw: np.ndarray = np.zeros(0)
    if keys:
        rows_of = np.array([i for i, _ in keys], dtype=int)
        raw = np.asarray(score([text for _, text in keys], rows_of), dtype=float)
    results = []
    for test in tests:
        rows, before, after, unread = found[test.name]
        if len(rows) < conf.min_cases:
            empty = np.zeros(len(rows))
            result = outcome(test, empty, empty, calibration, grading, conf)
        else:
            raw_before = raw[[wanted[(i, t)] for i, t in zip(rows.tolist(), before, strict=True)]]
            raw_after = raw[[wanted[(i, t)] for i, t in zip(rows.tolist(), after, strict=True)]]
            result = outcome(test, raw_before, raw_after, calibration, grading, conf)
        if unread:
            why = (
                "the redaction took the values out, or the model reads the same tokens"
                if test.kind == PERSONAL_DATA
                else "the model reads the same tokens (beyond its window, or its tokenizer "
                "ignores the edit)"
            )
            result = replace(result, detail=f"{result.detail}; {unread} more left out: {why}")
        results.append(result)
    return results


def summary_of(
    results: Sequence[TestOutcome], source: str, documents: int, max_documents: int = 0
) -> dict[str, Any]:
    """What the manifest records (and the gate and the model card read)."""
    failed = [r.test for r in results if r.status == FAIL]
    assessed = [r for r in results if r.status != NOT_ASSESSED]
    return {
        "source": source,
        "documents": documents,
        "max_documents": max_documents,
        "tests": [r.as_row() for r in results],
        "assessed": len(assessed),
        "failed": failed,
        "verdict": FAIL if failed else (PASS if assessed else NOT_ASSESSED),
    }


def frame_of(results: Sequence[TestOutcome]) -> pd.DataFrame:
    return pd.DataFrame([r.as_row() for r in results])


def scorer_of(
    tokenizer: Any,
    model: Any,
    *,
    max_length: int,
    chunking: dict[str, Any] | None,
    features: dict[str, Any] | None,
    frame: pd.DataFrame,
) -> ScoreFn:
    """Raw PDs through the nightly UDF's path (fp32), a fused model's features from ``frame``'s
    rows."""
    from riskudf.training.finetune import score_texts

    def score(texts: list[str], rows: np.ndarray) -> np.ndarray:
        part = frame.iloc[rows].reset_index(drop=True) if features else None
        scored = score_texts(
            tokenizer,
            model,
            texts,
            max_length=max_length,
            chunking=chunking or None,
            features=features or None,
            frame=part,
        )
        return scored["pd"].to_numpy()

    return score


def assess(
    tokenizer: Any,
    model: Any,
    test: pd.DataFrame,
    *,
    calibration: dict[str, Any],
    grading: GradingConf,
    conf: RobustnessConf,
    redaction: RedactionConf,
    max_length: int,
    chunking: dict[str, Any] | None,
    features: dict[str, Any] | None,
    source: str,
    tests: Sequence[Test] = SUITE,
) -> dict[str, Any]:
    """The suite on a test split (``text`` redacted, feature columns for a fused model): the
    summary a manifest records."""
    redactor = Redactor.of(redaction)
    frame = test.reset_index(drop=True)
    score = scorer_of(
        tokenizer, model, max_length=max_length, chunking=chunking, features=features, frame=frame
    )

    reader = Scorer(
        tokenizer,
        model,
        positive_label=1,
        device="cpu",
        options=ScoringOptions(max_length=max_length, token_budget=0, precision="fp32"),
        chunking=chunking or None,
        features=features or None,
    )

    def window(text: str) -> tuple[tuple[int, ...], ...]:
        """The token windows the model reads of ``text`` (the head, chunks or segments)."""
        return tuple(map(tuple, reader.windows_of(reader.tokenize([text])["input_ids"]).windows))

    results = run_suite(
        frame["text"].tolist(),
        score,
        calibration=calibration,
        grading=grading,
        conf=conf,
        redact=lambda text: redactor.redact(text)[0],
        window=window,
        tests=tests,
    )
    return summary_of(results, source, len(frame), conf.max_documents)


def ensure_report_table(spark: SparkSession, table: str) -> None:
    ensure_table_and_database(
        spark,
        table,
        MODEL_ROBUSTNESS_COLUMNS,
        comment=MODEL_ROBUSTNESS_COMMENT,
        properties=RETENTION_PROPERTIES,
    )


def write_report(
    spark: SparkSession, table: str, model_name: str, version: str, summary: dict[str, Any]
) -> None:
    """Replace the model version's rows of ``table`` (created if missing) with ``summary``'s:
    one atomic commit; a rerun for the version leaves one report, older ones in history."""
    ensure_report_table(spark, table)
    at = dt.datetime.now(dt.UTC)
    names = [name for name, *_ in MODEL_ROBUSTNESS_COLUMNS]
    rows = [
        tuple(
            {
                "model_name": model_name,
                "model_version": version,
                "assessed_at": at,
                "source": summary["source"],
                **test,
            }[name]
            for name in names
        )
        for test in summary["tests"]
    ]
    frame = spark.createDataFrame(rows, schema(MODEL_ROBUSTNESS_COLUMNS))
    condition = (F.col("model_name") == model_name) & (F.col("model_version") == version)
    replace_where(frame, table, condition)
