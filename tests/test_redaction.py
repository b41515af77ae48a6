"""Personal data out of the text before the model (riskudf/documents/redact.py).

Pure rules on strings; then one story on small inline inputs with the tiny model: run 1 scores
obligors whose reports name them (known values in the portfolio for one, patterns only for the
other); the identities are then changed everywhere and run 2 scores the same date again.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from riskudf.config import ConfigError, RedactionConf, RedactionRuleConf, load_config, parse_config
from riskudf.documents.redact import Redactor, check_model_rules, rules_record
from riskudf.lakehouse.delta import overwrite_table
from riskudf.model.artifact import ArtifactError, read_manifest
from riskudf.scoring.pipeline import build_documents, load_model, read_inputs, score_portfolio

ROOT = Path(__file__).resolve().parents[1]
DB = "redact"
D1 = dt.date(2026, 11, 20)
PORTFOLIO = (
    "obligor_id string, segment string, exposure double, legal_name string, "
    "street_address string, birth_date date"
)
REPORTS = "report_id string, obligor_id string, report_date date, text string"
BODY = " Payment history: {n} accounts, all paid as agreed. Utilisation {u} percent."
# Who obligor A is (the portfolio knows it) and who B is (only the text says it).
A_FIRST = ("Quentin Zorblax", "4471 Zyxwvut Road", dt.date(1931, 7, 4))
A_SECOND = ("Wilhelmina Brightwater-Okonkwo", "9 Harbour Road", dt.date(1999, 1, 2))
B_FIRST = ("Xavier Qwmbly", "12 Pqrstu Lane", "02/03/1944")
B_SECOND = ("Ida Fenwick", "310 Kingsway", "30/12/1987")
SENTINELS = ("zorblax", "zyxwvut", "4471", "1931", "qwmbly", "pqrstu", "1944")

REDACTOR = Redactor.of(RedactionConf())


def redacted(text: str, known: dict | None = None) -> tuple[str, dict[str, int]]:
    out, counts = REDACTOR.redact(text, known)
    return out, {k: n for k, n in zip(REDACTOR.kinds, counts, strict=True) if n}


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("Mail j.doe+loans@example.co.uk today.", "Mail [EMAIL] today.", "EMAIL"),
        ("Subject born 1972, no records.", "Subject born [BIRTH_DATE], no records.", "BIRTH_DATE"),
        ("Date of birth: 12 March 1968.", "Date of birth: [BIRTH_DATE].", "BIRTH_DATE"),
        ("SSN 123-45-6789 on file.", "SSN [NATIONAL_ID] on file.", "NATIONAL_ID"),
        ("NI number AB123456C.", "NI number [NATIONAL_ID].", "NATIONAL_ID"),
        ("Paid from GB82 WEST 1234 5698 7654 32.", "Paid from [ACCOUNT].", "ACCOUNT"),
        ("Account number: 12345678.", "Account number: [ACCOUNT].", "ACCOUNT"),
        ("Tel. 020 7946 0958 (home).", "Tel. [PHONE] (home).", "PHONE"),
        ("Call +44 20 7946 0958.", "Call [PHONE].", "PHONE"),
        ("Lives at 12 Elm Street, since 2019.", "Lives at [ADDRESS], since 2019.", "ADDRESS"),
        ("Registered at 7 Kingsway.", "Registered at [ADDRESS].", "ADDRESS"),
        ("Subject: Ava Müller-Smith, employed.", "Subject: [NAME], employed.", "NAME"),
        ("Signed by Dr. J. R. Okafor.", "Signed by Dr. [NAME].", "NAME"),
        ("Officer Lena Novak resigned.", "Officer [NAME] resigned.", "NAME"),
    ],
)
def test_each_kind_becomes_its_placeholder_and_the_context_stays(text, expected, kind):
    out, counts = redacted(text)
    assert out == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "3 payments 30 to 59 days past due in the last 24 months.",
        "Tradeline 2: credit card, opened 1999, balance 1,234, status current.",
        "Report reference R-000123-2, prepared 2026-11-28.",
        "Revolving utilisation is 95% of total limits across 4 open revolving accounts.",
        "[CREDIT REPORT 2026-06-01]\nNo public records found.",
        "The current ratio fell to 0.8; covenant waiver obtained on 2025-03-31.",
    ],
)
def test_risk_content_is_left_alone(text):
    assert redacted(text) == (text, {})


def test_known_values_are_replaced_anywhere_and_short_ones_skipped():
    text = "ava  smith called; Ava Smith's file. Ref Ava."
    known = {"NAME": ["Ava Smith", "Ava", None]}
    out, counts = redacted(text, known)
    assert out == "[NAME] called; [NAME]'s file. Ref Ava."
    assert counts == {"NAME": 2}


def test_a_known_value_kind_without_a_rule_is_counted():
    redactor = Redactor.of(RedactionConf(known_columns={"CUSTOMER_REF": ("crm_ref",)}))
    out, counts = redactor.redact("CRM ref K77-ABC-009 noted.", {"CUSTOMER_REF": ["K77-ABC-009"]})
    assert out == "CRM ref [CUSTOMER_REF] noted."
    assert dict(zip(redactor.kinds, counts, strict=True))["CUSTOMER_REF"] == 1


def test_an_optional_group_that_took_no_part_replaces_nothing():
    rule = RedactionRuleConf(kind="ACCOUNT", patterns=(r"Ref(?: no\. (\d+))?",))
    redactor = Redactor.of(RedactionConf(rules=(rule,)))
    out, counts = redactor.redact("Ref given. Ref no. 12345 given.")
    assert out == "Ref given. Ref no. [ACCOUNT] given."
    assert counts == [1]


def test_rules_are_checked_at_config_load():
    base = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    for rules, message in (
        ([{"kind": "NAME", "patterns": ["(unclosed"]}], "bad pattern"),
        ([{"kind": "NAME", "patterns": ["(a)(b)"]}], "more than one group"),
        ([{"kind": "NAME", "patterns": ["x"]}, {"kind": "NAME", "patterns": ["y"]}], "unique"),
        ([{"kind": "name", "patterns": ["x"]}], "kind"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config({**base, "redaction": {"rules": rules}})


def test_the_manifest_records_the_rules_and_scoring_refuses_other_ones(tiny_model: Path):
    manifest = read_manifest(tiny_model)
    assert manifest.redaction == rules_record(RedactionConf())
    check_model_rules(manifest, RedactionConf())  # the rules it was trained under
    # Which columns hold known values is recorded, not compared.
    check_model_rules(manifest, RedactionConf(known_columns={"NAME": ("legal_name",)}))
    other = RedactionConf(rules=(RedactionRuleConf(kind="NAME", patterns=("Mr [A-Z]\\w+",)),))
    with pytest.raises(ArtifactError, match="trained under redaction rules"):
        check_model_rules(manifest, other)
    with pytest.raises(ArtifactError, match="trained without redaction"):
        check_model_rules(manifest.model_copy(update={"redaction": {}}), RedactionConf())


# --- one story on Spark -------------------------------------------------------------------


def write_conf(path: Path, model_dir: Path, *, monitoring: bool):
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = DB
    data["scoring"]["model"] = str(model_dir)
    data["scoring"]["precision"] = "fp32"
    data["monitoring"]["enabled"] = monitoring
    data["monitoring"]["report_dir"] = str(path.parent / "reports")
    data["spark"]["event_log_dir"] = str(path.parent / "spark-events")
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def write_inputs(spark, a: tuple, b: tuple) -> None:
    name_a, street_a, born_a = a
    name_b, street_b, born_b = b
    portfolio = spark.createDataFrame(
        [
            ("A", "retail", 1000.0, name_a, street_a, born_a),
            ("B", "retail", 2000.0, None, None, None),
            ("C", "retail", 3000.0, None, None, None),
        ],
        PORTFOLIO,
    )
    day = dt.date(2026, 6, 1)
    reports = spark.createDataFrame(
        [
            (
                "R-A",
                "A",
                day,
                f"Subject: {name_a}, born {born_a.year}, residing at {street_a}."
                + BODY.format(n=3, u=15)
                + f" {name_a} confirmed the details.",
            ),
            (
                "R-B",
                "B",
                day,
                f"Mr {name_b}, date of birth {born_b}, of {street_b}." + BODY.format(n=5, u=90),
            ),
            ("R-C", "C", day, "No personal data here." + BODY.format(n=1, u=40)),
        ],
        REPORTS,
    )
    filings = spark.createDataFrame(
        [], "filing_id string, obligor_id string, filing_date date, form_type string, text string"
    )
    overwrite_table(portfolio, f"{DB}.portfolio")
    overwrite_table(reports, f"{DB}.credit_reports")
    overwrite_table(filings, f"{DB}.filings")


@pytest.fixture(scope="module")
def story(spark, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("redact")
    # Run 1 (the sentinels) is monitored: its report is searched too.
    conf = write_conf(folder / "redact.yaml", tiny_model, monitoring=True)
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")
    spark.sql(f"CREATE DATABASE {DB}")
    write_inputs(spark, A_FIRST, B_FIRST)
    inputs = read_inputs(spark, conf)
    model = load_model(spark, conf, inputs)
    documents = build_documents(inputs, conf, model, as_of=D1, today=D1)
    texts = {r["obligor_id"]: r["document"] for r in documents.scorable.collect()}
    first = score_portfolio(spark, conf, as_of=D1)
    first_pds = {
        r["obligor_id"]: r["pd"]
        for r in spark.table(f"{DB}.scored_portfolio")
        .where(F.col("run_id") == first.run_id)
        .collect()
    }
    write_inputs(spark, A_SECOND, B_SECOND)
    second = score_portfolio(
        spark, write_conf(folder / "quiet.yaml", tiny_model, monitoring=False), as_of=D1
    )
    return conf, texts, first, first_pds, second


def test_the_documents_the_model_reads_carry_placeholders(story):
    _, texts, *_ = story
    assert texts["A"] == (
        "[CREDIT REPORT 2026-06-01]\nSubject: [NAME], born [BIRTH_DATE], residing at [ADDRESS]."
        + BODY.format(n=3, u=15)
        + " [NAME] confirmed the details."
    )
    assert texts["B"] == (
        "[CREDIT REPORT 2026-06-01]\nMr [NAME], date of birth [BIRTH_DATE], of [ADDRESS]."
        + BODY.format(n=5, u=90)
    )


def test_no_sentinel_reaches_the_tokens_fed_to_the_model(story, tiny_model: Path):
    from riskudf.model.load import load_sequence_classifier, load_tokenizer
    from riskudf.scoring.scorer import Scorer, ScoringOptions

    _, texts, *_ = story
    tokenizer = load_tokenizer(tiny_model)
    scorer = Scorer(
        tokenizer,
        load_sequence_classifier(tiny_model, num_labels=2),
        positive_label=1,
        device="cpu",
        options=ScoringOptions(max_length=64, token_budget=4096, precision="fp32"),
    )
    prepared = scorer.prepare(list(texts.values()))
    fed = " ".join(tokenizer.decode(window) for window in prepared.windows).lower()
    assert "credit report" in fed  # the windows are the documents
    for sentinel in SENTINELS:
        assert sentinel not in fed


def test_the_pd_is_unchanged_when_name_address_and_birth_date_change(spark, story):
    _, _, _, first_pds, second = story
    second_pds = {
        r["obligor_id"]: r["pd"]
        for r in spark.table(f"{DB}.scored_portfolio")
        .where(F.col("run_id") == second.run_id)
        .collect()
    }
    assert sorted(second_pds) == sorted(first_pds) == ["A", "B", "C"]
    for obligor, pd_first in first_pds.items():
        assert second_pds[obligor] == pytest.approx(pd_first, abs=1e-6), obligor
    # The model gives different documents different PDs: the check above can fail.
    assert len({round(p, 6) for p in first_pds.values()}) > 1


def test_the_run_log_counts_redactions_per_kind(spark, story):
    _, _, first, *_ = story
    row = spark.table(f"{DB}.score_runs").where(F.col("run_id") == first.run_id).first()
    counts = {k: v for k, v in row["redactions"].items() if v}
    # A: two names and the address from the portfolio, the year by pattern; B: by pattern.
    assert counts == {"NAME": 3, "ADDRESS": 2, "BIRTH_DATE": 2}


def test_no_sentinel_in_any_output_table_or_the_monitoring_report(spark, story):
    conf, _, first, *_ = story
    values = [s for s in SENTINELS if not s.isdigit()]
    tables = [r["tableName"] for r in spark.sql(f"SHOW TABLES IN {DB}").collect()]
    inputs = {"portfolio", "credit_reports", "filings"}
    assert {"scored_portfolio", "score_runs", "monitor_runs"} <= set(tables)
    for table in set(tables) - inputs:
        for row in spark.table(f"{DB}.{table}").collect():
            text = repr(tuple(row)).lower()
            assert not [s for s in values if s in text], table
    reports = list(Path(conf.monitoring.report_dir).rglob(f"{first.run_id}.html"))
    assert len(reports) == 1
    text = reports[0].read_text().lower()
    assert not [s for s in values if s in text]
