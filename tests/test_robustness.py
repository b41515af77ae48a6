"""The robustness report: perturbations on inline documents, the suite's figures on a known
scorer, and a model that never learned the adverse facts failing the direction tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskudf.config import RedactionConf, RobustnessConf, TrainingConf, load_config
from riskudf.documents.redact import Redactor
from riskudf.governance import robustness as rb
from riskudf.governance.promote import robustness_results

ROOT = Path(__file__).resolve().parents[1]
GRADING = load_config(ROOT / "conf/local.yaml").grading

REPORT = (
    "CONSUMER CREDIT REPORT\nReport reference R1, prepared 2026-05-08.\n"
    "Subject: [NAME], date of birth [BIRTH_DATE], residing at [ADDRESS].\n\n"
    "PAYMENT HISTORY\nNo late payments in the last 24 months. Accounts were delinquent in 3 "
    "monthly cycles of the last 24.\n\n"
    "PUBLIC RECORDS\nSearches of court and insolvency registers were clear.\n\n"
    "EMPLOYMENT AND INCOME\nIncome verified at 48,400.50 and 1.80 times rent; 123456 points."
)


@pytest.mark.parametrize(
    ("sentence", "pattern", "adverse"),
    [
        ("No late payments in the last 24 months.", rb.DELINQUENCY, False),
        ("Not a single payment has been missed in the past two years.", rb.DELINQUENCY, False),
        ("Days past due: 0.", rb.DELINQUENCY, False),
        ("Zero accounts in arrears.", rb.DELINQUENCY, False),
        ("Arrears cleared in full in 2021.", rb.DELINQUENCY, False),
        ("Searches of court and insolvency registers were clear.", rb.BANKRUPTCY, False),
        (
            "The obligor is not insolvent but two accounts are 90 days past due.",
            rb.BANKRUPTCY,
            False,
        ),
        (
            "The obligor is not insolvent but two accounts are 90 days past due.",
            rb.DELINQUENCY,
            True,
        ),
        (
            "The accounts are prepared on a going concern basis with no material uncertainty.",
            rb.GOING_CONCERN,
            False,
        ),
        (
            "A material uncertainty exists about our ability to continue operating.",
            rb.GOING_CONCERN,
            True,
        ),
        ("Accounts were delinquent in 3 monthly cycles of the last 24.", rb.DELINQUENCY, True),
    ],
)
def test_a_fact_is_stated_unless_negated_or_cleared(sentence, pattern, adverse) -> None:
    assert rb.stated(sentence, pattern) is adverse


def test_an_abbreviation_does_not_end_a_sentence() -> None:
    text = "PUBLIC RECORDS\nCompany No. 0123 entered liquidation. Clean record otherwise."
    assert rb.without_sentences(text, rb.BANKRUPTCY) == "PUBLIC RECORDS\nClean record otherwise."


def test_noise_leaves_the_redaction_placeholders_alone() -> None:
    rng = np.random.default_rng(0)
    for noisy in (rb.typos(REPORT, rng, rate=1.0), rb.ocr_noise(REPORT, rng, rate=1.0)):
        assert noisy is not None
        assert rb.PLACEHOLDER.findall(noisy) == ["[NAME]", "[BIRTH_DATE]", "[ADDRESS]"]
    assert "[NAME]" in rb.whitespace_case(REPORT, rng)


def test_removing_a_fact_keeps_negations_headers_and_lines() -> None:
    removed = rb.without_sentences(REPORT, rb.DELINQUENCY)
    assert removed is not None
    assert "PAYMENT HISTORY\nNo late payments in the last 24 months.\n\nPUBLIC" in removed
    assert "delinquent in 3" not in removed
    # "insolvency registers were clear" states no insolvency: nothing to remove
    assert rb.without_sentences(REPORT, rb.BANKRUPTCY) is None
    assert rb.states(REPORT, rb.DELINQUENCY) and not rb.states(REPORT, rb.GOING_CONCERN)


def test_rewrites_of_invariance_keep_the_content() -> None:
    rng = np.random.default_rng(0)
    assert rb.number_formats(REPORT, rng) == REPORT.replace(
        "48,400.50 and 1.80 times rent; 123456", "48400.5 and 1.8 times rent; 123,456"
    )
    shuffled = rb.sections_reordered(REPORT, rng)
    assert shuffled is not None and shuffled != REPORT
    assert shuffled.startswith("CONSUMER CREDIT REPORT\n")
    assert sorted(rb.paragraphs(shuffled)) == sorted(rb.paragraphs(REPORT))
    added = rb.boilerplate(REPORT, rng)
    assert rb.paragraphs(added)[1] == rb.BOILERPLATE and added.replace(
        rb.BOILERPLATE + "\n\n", ""
    ) == "\n\n".join(rb.paragraphs(REPORT))
    typo = rb.typos(REPORT, np.random.default_rng(3))
    assert typo is not None and len(typo) == len(REPORT) and sorted(typo) == sorted(REPORT)
    # a fact already stated is not added again; one added goes after the header
    assert rb.adds("delinquency", rb.DELINQUENCY)(REPORT, rng) is None
    gone = rb.adds("going_concern", rb.GOING_CONCERN)(REPORT, rng)
    assert gone is not None and rb.paragraphs(gone)[1] == rb.ADDED["going_concern"]


def test_personal_data_values_are_redacted_as_scoring_would() -> None:
    redactor = Redactor.of(RedactionConf())
    [name] = [t for t in rb.SUITE if t.name == "name_changed"]
    order = np.arange(2)
    texts = [REPORT, "BUSINESS CREDIT REPORT\nNo personal data here."]
    rows, before, after = rb.cases_of(
        name, texts, order, RobustnessConf(), lambda t: redactor.redact(t)[0]
    )
    assert rows.tolist() == [0]
    # "Subject: <name>" is a NAME rule's context: both values come back as the placeholder
    assert before == after == [REPORT]


def name_reader(texts: list[str], rows: np.ndarray) -> np.ndarray:
    """A model that reads one surname: PD 2 %, 12 % when the text names Okafor."""
    return np.array([0.12 if "Okafor" in t else 0.02 for t in texts])


def test_a_name_the_rules_miss_reaches_the_model_and_fails_the_test() -> None:
    redactor = Redactor.of(RedactionConf())
    caught = [REPORT.replace("R1", f"R{i}") for i in range(12)]
    missed = [f"NOTES\nSpoke with [NAME] about account {i} on the phone." for i in range(30)]
    conf = RobustnessConf(min_cases=8)
    [name] = [t for t in rb.SUITE if t.name == "name_changed"]

    def run(texts: list[str]) -> rb.TestOutcome:
        [result] = rb.run_suite(
            texts,
            name_reader,
            calibration={"method": "none"},
            grading=GRADING,
            conf=conf,
            redact=lambda t: redactor.redact(t)[0],
            tests=[name],
        )
        return result

    only_caught = run(caught)  # the rules took every value out: nothing reached the model
    assert (only_caught.status, only_caught.cases) == (rb.NOT_ASSESSED, 0)
    assert "12 more left out" in only_caught.detail
    both = run(caught + missed)
    assert both.cases == 30 and both.status == rb.FAIL and "12 more left out" in both.detail
    assert both.max_abs_pd_change == pytest.approx(0.1, abs=1e-12)
    # a model that does not read names passes on the same cases
    [blind] = rb.run_suite(
        caught + missed,
        lambda texts, rows: np.full(len(texts), 0.02),
        calibration={"method": "none"},
        grading=GRADING,
        conf=conf,
        redact=lambda t: redactor.redact(t)[0],
        tests=[name],
    )
    assert (blind.cases, blind.status) == (30, rb.PASS)


def test_an_edit_beyond_the_window_is_no_case() -> None:
    head = "CREDIT REPORT\nReference R.\n\nPAYMENT HISTORY\nPaid as agreed."
    texts = [f"{head}\n\nLATER\nAccounts were delinquent in {i} cycles." for i in range(10)]
    [removed] = [t for t in rb.SUITE if t.name == "delinquency_removed"]
    kw = {"calibration": {"method": "none"}, "grading": GRADING, "tests": [removed]}
    conf = RobustnessConf(min_cases=5)
    [seen] = rb.run_suite(texts, flat_scorer, conf=conf, **kw)
    assert (seen.cases, seen.status) == (10, rb.PASS)
    [unseen] = rb.run_suite(texts, flat_scorer, conf=conf, window=lambda t: t[: len(head)], **kw)
    assert (unseen.cases, unseen.status) == (0, rb.NOT_ASSESSED)
    assert "10 more left out: the model reads the same tokens" in unseen.detail


def flat_scorer(texts: list[str], rows: np.ndarray) -> np.ndarray:
    """PD 2 %, x 10 in odds for a delinquency stated, + 5 % for each 'points' (a typo moves it)."""
    odds = np.array([0.02 / 0.98 * (10 if rb.states(t, rb.DELINQUENCY) else 1) for t in texts])
    pds = odds / (1 + odds)
    return pds + 0.05 * np.array(["points" not in t for t in texts])


def test_the_suite_figures_on_a_known_scorer() -> None:
    texts = [REPORT.replace("R1", f"R{i}") for i in range(12)]
    texts += [rb.without_sentences(REPORT, rb.DELINQUENCY) or ""] * 8
    conf = RobustnessConf(min_cases=8, max_documents=20)
    results = {
        r.test: r
        for r in rb.run_suite(
            texts, flat_scorer, calibration={"method": "none"}, grading=GRADING, conf=conf
        )
    }
    added = results["delinquency_added"]  # the 8 documents without one
    assert (added.cases, added.failed, added.status) == (8, 0, rb.PASS)
    before, after = 0.02, 0.2 / 1.18
    assert added.mean_pd_change == pytest.approx(after - before, abs=1e-12)
    removed = results["delinquency_removed"]  # the 12 with one
    assert (removed.cases, removed.failed, removed.status) == (12, 0, rb.PASS)
    assert results["going_concern_removed"].status == rb.NOT_ASSESSED  # none states one
    assert results["going_concern_added"].status == rb.FAIL  # the scorer cannot read it
    assert results["going_concern_added"].fail_rate == 1.0
    assert results["boilerplate_added"].status == rb.PASS
    assert results["boilerplate_added"].max_abs_pd_change == 0.0
    invariant = ("number_formats", "sections_reordered", "boilerplate_added", "whitespace_case")
    assert {results[name].status for name in invariant} == {rb.PASS}


def test_gate_colours_of_a_robustness_report() -> None:
    tests = [
        {
            "test": "typos",
            "kind": "invariance",
            "status": "fail",
            "fail_rate": 0.2,
            "detail": "d",
            "threshold": "t",
        },
        {
            "test": "bankruptcy_added",
            "kind": "direction",
            "status": "fail",
            "fail_rate": 0.5,
            "detail": "d",
            "threshold": "t",
        },
        {
            "test": "name_changed",
            "kind": "personal_data",
            "status": "pass",
            "fail_rate": 0.0,
            "detail": "d",
            "threshold": "t",
        },
        {
            "test": "going_concern_removed",
            "kind": "direction",
            "status": "not_assessed",
            "fail_rate": None,
            "detail": "d",
            "threshold": "t",
        },
    ]
    colours = {r.test: r.colour for r in robustness_results(tests, ("direction",))}
    assert colours == {
        "robustness:typos": "yellow",
        "robustness:bankruptcy_added": "red",
        "robustness:name_changed": "green",
        "robustness:going_concern_removed": "not_assessed",
    }
    [missing] = robustness_results(None, ("direction",))
    assert (missing.test, missing.colour) == ("robustness", "not_assessed")


ADVERSE = {
    "delinquency": (
        "Two accounts are 90 days past due and were reported delinquent.",
        "All payments were made on time.",
    ),
    "bankruptcy": (
        "A bankruptcy petition was filed against the obligor last year.",
        "No public records.",
    ),
    "going_concern": (
        "Our auditors drew attention to a material uncertainty over the going concern basis.",
        "Our auditors raised no going concern issue.",
    ),
}
FILLER = (
    "The obligor operates in the services sector.",
    "The report was prepared at the lender's request.",
    "Figures are stated in thousands.",
    "The file was reviewed this year.",
)


def synthetic(n: int, seed: int, neutralised: bool = False) -> pd.DataFrame:
    """Documents whose adverse facts drive default; ``neutralised``: the same documents and
    labels with every adverse sentence replaced by its clean counterpart."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        stated = {fact for fact in ADVERSE if rng.random() < 0.25}
        label = int(rng.random() < (0.85 if stated else 0.04))
        sections = [f"CREDIT REPORT\nReference Q{seed}-{i}."]
        for fact, (bad, good) in ADVERSE.items():
            sections.append(good if fact not in stated or neutralised else bad)
        sections.append(str(rng.choice(FILLER)))
        rows.append({"id": f"o{i}", "text": "\n\n".join(sections), "label": label})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("neutralised", [False, True], ids=["learned", "neutralised"])
def test_a_model_blind_to_adverse_facts_fails_the_direction_tests(neutralised: bool) -> None:
    from riskudf.training.finetune import default_backbone_dir
    from riskudf.training.probe import fit_probe

    conf = TrainingConf(method="probe", max_length=64, seed=0)
    tuned = fit_probe(
        synthetic(160, 1, neutralised),
        synthetic(80, 2, neutralised),
        conf,
        backbone=default_backbone_dir(),
    )
    direction = [t for t in rb.SUITE if t.kind == rb.DIRECTION]
    summary = rb.assess(
        tuned.tokenizer,
        tuned.model,
        synthetic(60, 3),  # the real documents, facts stated
        calibration={"method": "none"},
        grading=GRADING,
        conf=RobustnessConf(max_documents=30, min_cases=8),
        redaction=RedactionConf(),
        max_length=64,
        chunking=None,
        features=tuned.features,
        source="synthetic",
        tests=direction,
    )
    found = {t["test"]: t for t in summary["tests"]}
    added = {found[f"{fact}_added"]["status"] for fact in ADVERSE}
    removed = [found[f"{fact}_removed"] for fact in ADVERSE]
    if neutralised:  # adding or removing a fact moves its PD by noise only
        assert summary["verdict"] == rb.FAIL and added == {rb.FAIL}, found
        assert all(abs(t["mean_pd_change"]) < 0.1 and t["status"] == rb.FAIL for t in removed)
    else:
        assert added == {rb.PASS}, found
        # Removing a fact lowers the PD on average; a mean-pooled probe may still raise it in
        # a document with other facts, whose share of the pooled text grows.
        assert all(t["mean_pd_change"] < -0.2 for t in removed), removed
