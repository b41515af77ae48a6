"""Synthetic but realistic demo data: portfolio, credit reports, filings and outcomes.

Every obligor is generated from its own seeded random stream (seed, obligor index), so the data
is the same whatever the partitioning, and generation runs distributed in ``mapInPandas``.
A latent risk drives the text's risk signals (delinquencies, utilisation, inquiries, public
records, employment; liquidity, covenants, going-concern and litigation language in filings) and,
with noise, the 12-month default.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskudf.documents.assemble import assemble_documents
from riskudf.lakehouse.delta import ensure_database, overwrite_table

FIRST_NAMES = (
    "Ava",
    "Noah",
    "Mia",
    "Liam",
    "Zoe",
    "Ethan",
    "Ivy",
    "Owen",
    "Lena",
    "Omar",
    "Sofia",
    "Ravi",
    "Hana",
    "Jonas",
    "Maya",
    "Tomas",
    "Aisha",
    "Felix",
    "Nora",
    "Yusuf",
)
LAST_NAMES = (
    "Smith",
    "Garcia",
    "Nguyen",
    "Okafor",
    "Müller",
    "Kowalski",
    "Rossi",
    "Khan",
    "Silva",
    "Johansson",
    "Dubois",
    "Tanaka",
    "Brown",
    "Novak",
    "Haddad",
    "Costa",
)
STREETS = ("Elm Street", "Harbour Road", "Mill Lane", "Station Avenue", "Kingsway", "Oak Drive")
REGIONS = ("north", "south", "east", "west", "central", "coastal")
AGE_BANDS = ("18-25", "26-35", "36-50", "51-65", "65+")
INDUSTRIES = (
    "manufacturing",
    "retail trade",
    "construction",
    "logistics",
    "software",
    "hospitality",
    "healthcare services",
    "agriculture",
)
EMPLOYERS = (
    "a regional hospital",
    "a logistics firm",
    "the city council",
    "a retail chain",
    "a software company",
    "a construction company",
    "a secondary school",
)
OCCUPATIONS = ("nurse", "driver", "clerk", "store manager", "engineer", "electrician", "teacher")
PRODUCTS = (
    "Revolving credit card",
    "Auto loan",
    "Mortgage",
    "Personal loan",
    "Store card",
    "Overdraft facility",
    "Student loan",
)
BOILERPLATE = (
    "Our results depend on general economic conditions, interest rates and the availability of "
    "credit to our customers, and a downturn could reduce demand for our products.",
    "We rely on a limited number of suppliers for key inputs; disruption in their operations "
    "could delay our deliveries and increase our costs.",
    "Changes in tax law, accounting standards or regulation in the jurisdictions where we "
    "operate could affect our reported results and our cash flows.",
    "We depend on information systems; a cyber incident could interrupt operations, expose "
    "confidential data and lead to claims and regulatory penalties.",
    "Competition in our markets is intense and pricing pressure could reduce our margins.",
    "Our ability to attract and retain skilled staff affects our capacity to serve customers.",
    "Fluctuations in energy and commodity prices affect our input costs and those of our clients.",
    "Exchange rate movements affect the value of sales and purchases made in other currencies.",
)

PORTFOLIO_SCHEMA = (
    "obligor_id string, segment string, exposure double, age_band string, region string, "
    "industry string, legal_name string, contact_name string, street_address string, "
    "birth_date date"
)
REPORT_SCHEMA = "report_id string, obligor_id string, report_date date, text string"
FILING_SCHEMA = (
    "filing_id string, obligor_id string, filing_date date, form_type string, text string"
)
IDENTITY_COLUMNS = ("legal_name", "contact_name", "street_address", "birth_date")
OUTCOME_SCHEMA = "obligor_id string, observation_date date, default_12m int"


@dataclass(frozen=True)
class DemoSpec:
    seed: int = 7
    as_of: dt.date = dt.date(2026, 11, 28)
    observation_date: dt.date = dt.date(2025, 11, 28)
    corporate_share: float = 0.3
    # Population shift: added to every obligor's latent risk (0: the reference population). A
    # positive shift makes riskier text (more delinquencies, covenant breaches) and more defaults.
    shift: float = 0.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def obligor_id(index: int) -> str:
    return f"OBL{index:07d}"


def _latent(spec: DemoSpec, index: int) -> tuple[np.random.Generator, bool, float]:
    rng = np.random.default_rng([spec.seed, index])
    corporate = bool(rng.random() < spec.corporate_share)
    return rng, corporate, float(rng.normal()) + spec.shift


def identity(spec: DemoSpec, index: int) -> dict[str, object]:
    """What the bank holds about who the obligor is (personal data): the same in the portfolio
    table and in every report, for redaction's known values."""
    _, corporate, _ = _latent(spec, index)
    rng = np.random.default_rng([spec.seed, index, 5])
    person = f"{_pick(rng, FIRST_NAMES)} {_pick(rng, LAST_NAMES)}"
    company = f"{_pick(rng, LAST_NAMES)} {_pick(rng, ('Holdings', 'Industries', 'Group', 'Ltd'))}"
    birth = dt.date(
        int(rng.integers(1950, 2005)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    )
    return {
        "legal_name": company if corporate else person,
        "contact_name": person if corporate else None,
        "street_address": f"{int(rng.integers(1, 250))} {_pick(rng, STREETS)}",
        "birth_date": None if corporate else birth,
    }


def age_band(born: object, on: dt.date) -> str:
    """The band of AGE_BANDS holding the age on ``on`` of someone born on ``born``."""
    assert isinstance(born, dt.date)
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    for band, top in zip(AGE_BANDS, (25, 35, 50, 65), strict=False):
        if age <= top:
            return band
    return AGE_BANDS[-1]


def portfolio_row(spec: DemoSpec, index: int) -> dict[str, object]:
    rng, corporate, _ = _latent(spec, index)
    rng = np.random.default_rng([spec.seed, index, 1])
    exposure = rng.lognormal(14.5, 1.0) if corporate else rng.lognormal(9.8, 0.8)
    who = identity(spec, index)
    return {
        "obligor_id": obligor_id(index),
        "segment": "corporate" if corporate else "retail",
        "exposure": round(float(exposure), 2),
        "age_band": None if corporate else age_band(who["birth_date"], spec.as_of),
        "region": _pick(rng, REGIONS),
        "industry": _pick(rng, INDUSTRIES) if corporate else None,
        **who,
    }


def outcome_row(spec: DemoSpec, index: int) -> dict[str, object]:
    _, _, risk = _latent(spec, index)
    rng = np.random.default_rng([spec.seed, index, 2])
    p_default = _sigmoid(-3.2 + 1.6 * risk + rng.normal(0.0, 0.5))
    return {
        "obligor_id": obligor_id(index),
        "observation_date": spec.observation_date,
        "default_12m": int(rng.random() < p_default),
    }


def _report_dates(rng: np.random.Generator, as_of: dt.date) -> list[dt.date]:
    count = 1 + int(rng.integers(4))
    latest = as_of - dt.timedelta(days=int(rng.integers(3, 330)))
    dates = [latest]
    for _ in range(count - 1):
        dates.append(dates[-1] - dt.timedelta(days=int(rng.integers(120, 420))))
    return dates


# Long on purpose: the text template of a demo credit report.
def _retail_report(
    rng: np.random.Generator, risk: float, report_id: str, date: dt.date, who: dict[str, object]
) -> str:
    late30 = int(rng.poisson(math.exp(risk - 0.6)))
    late90 = int(rng.poisson(math.exp(1.2 * risk - 1.8)))
    utilisation = round(100 * _sigmoid(0.9 * risk + rng.normal(0.0, 0.4)))
    inquiries = int(rng.poisson(math.exp(0.5 * risk + 0.2)))
    lines = [
        "CONSUMER CREDIT REPORT",
        f"Report reference {report_id}, prepared {date.isoformat()}.",
        f"Subject: {who['legal_name']}, date of birth {who['birth_date']}, residing at "
        f"{who['street_address']}.",
        "",
        "PAYMENT HISTORY",
    ]
    if late30 == 0 and late90 == 0:
        lines.append("All accounts have been paid as agreed over the last 24 months.")
    else:
        lines.append(f"{late30} payments 30 to 59 days past due in the last 24 months.")
        if late90:
            lines.append(
                f"{late90} accounts were 90 or more days delinquent; "
                f"{min(late90, 2)} referred to a collection agency."
            )
    lines += [
        "",
        "UTILISATION",
        f"Revolving utilisation is {utilisation}% of total limits across "
        f"{1 + int(rng.integers(6))} open revolving accounts.",
    ]
    if utilisation > 85:
        lines.append("Several cards are at or above their credit limit.")
    lines += ["", "INQUIRIES", f"{inquiries} hard inquiries in the last 6 months."]
    lines += ["", "PUBLIC RECORDS"]
    if risk > 1.6 and rng.random() < 0.6:
        lines.append(
            f"Chapter 7 bankruptcy filed {date.year - int(rng.integers(1, 4))}, discharged."
        )
    elif risk > 1.0 and rng.random() < 0.5:
        lines.append("County court judgment for unpaid debt recorded, not yet satisfied.")
    else:
        lines.append("No public records found.")
    lines += ["", "EMPLOYMENT AND INCOME"]
    if risk > 1.3 and rng.random() < 0.5:
        lines.append(
            "Currently unemployed; previous employment ended within the last year. "
            "Income not verified."
        )
    else:
        years = max(0, int(rng.normal(7 - 2 * risk, 3)))
        income = round(float(rng.lognormal(10.8 - 0.15 * risk, 0.35)), -2)
        lines.append(
            f"Employed as {_pick(rng, OCCUPATIONS)} at {_pick(rng, EMPLOYERS)} for "
            f"{years} years; stated annual income {income:,.0f}, verified by payslips."
        )
    lines += ["", "TRADELINE DETAIL"]
    for number in range(1 + int(rng.poisson(5 if rng.random() < 0.7 else 22))):
        balance = round(float(rng.lognormal(8, 1)))
        status = "current"
        if rng.random() < min(0.9, 0.08 * (late30 + 2 * late90)):
            status = _pick(rng, ("30 days past due", "60 days past due", "charged off"))
        lines.append(
            f"Tradeline {number + 1}: {_pick(rng, PRODUCTS)}, opened "
            f"{int(rng.integers(1998, date.year + 1))}, balance {balance:,}, "
            f"status {status}."
        )
    return "\n".join(lines)


def _business_report(
    rng: np.random.Generator, risk: float, report_id: str, date: dt.date, who: dict[str, object]
) -> str:
    paydex = int(np.clip(rng.normal(78 - 12 * risk, 5), 20, 100))
    beyond_terms = max(0, int(rng.normal(6 + 12 * risk, 6)))
    lines = [
        "BUSINESS CREDIT REPORT",
        f"Report reference {report_id}, prepared {date.isoformat()}.",
        f"Company: {who['legal_name']}; director {who['contact_name']}.",
        "",
        "PAYMENT HISTORY",
        f"Payment index {paydex}; suppliers are paid on average {beyond_terms} days beyond terms.",
        "",
        "UTILISATION",
        f"Committed facilities drawn to {round(100 * _sigmoid(0.8 * risk + rng.normal(0, 0.4)))}%.",
        "",
        "PUBLIC RECORDS",
    ]
    if risk > 1.2 and rng.random() < 0.5:
        lines.append("Tax lien filed by the revenue authority; two trade creditors filed claims.")
    else:
        lines.append("No liens, judgments or insolvency filings.")
    lines += [
        "",
        "INQUIRIES",
        f"{int(rng.poisson(math.exp(0.4 * risk + 0.5)))} credit inquiries "
        "by lenders in the last 6 months.",
    ]
    return "\n".join(lines)


def _filing_text(rng: np.random.Generator, risk: float, form: str) -> str:
    paragraphs = [f"FORM {form}. Management's discussion and analysis."]
    current_ratio = max(0.2, rng.normal(1.9 - 0.5 * risk, 0.3))
    if current_ratio < 1.0:
        paragraphs.append(
            f"LIQUIDITY. Our current ratio fell to {current_ratio:.2f}. Cash on hand "
            "covers about three months of operating expenses and we are seeking "
            "additional financing."
        )
    else:
        paragraphs.append(
            f"LIQUIDITY. Our current ratio was {current_ratio:.2f} and undrawn "
            "committed facilities provide ample liquidity for the next twelve "
            "months."
        )
    if risk + rng.normal(0, 0.5) > 1.0:
        paragraphs.append(
            "COVENANTS. We did not meet the maximum leverage covenant under our "
            "credit agreement at the quarter end; the lenders granted a temporary "
            "waiver and amended pricing."
        )
    else:
        paragraphs.append(
            "COVENANTS. We were in compliance with all financial covenants under "
            "our credit agreements."
        )
    if risk > 1.4 and rng.random() < 0.6:
        paragraphs.append(
            "GOING CONCERN. These conditions raise substantial doubt about the "
            "Company's ability to continue as a going concern."
        )
    if rng.random() < 0.15 + 0.2 * max(0.0, risk):
        paragraphs.append(
            "LITIGATION. A former customer filed a claim alleging breach of "
            "contract and seeking material damages; the outcome is uncertain."
        )
    for _ in range(int(rng.integers(0, 9))):
        paragraphs.append("RISK FACTORS. " + _pick(rng, BOILERPLATE))
    return "\n\n".join(paragraphs)


def report_rows(spec: DemoSpec, index: int) -> list[dict[str, object]]:
    _, corporate, risk = _latent(spec, index)
    rng = np.random.default_rng([spec.seed, index, 3])
    who = identity(spec, index)
    rows = []
    for number, date in enumerate(sorted(_report_dates(rng, spec.as_of))):
        report_id = f"R{index:07d}-{number + 1}"
        noisy = risk + float(rng.normal(0.0, 0.5))
        write = _business_report if corporate else _retail_report
        rows.append(
            {
                "report_id": report_id,
                "obligor_id": obligor_id(index),
                "report_date": date,
                "text": write(rng, noisy, report_id, date, who),
            }
        )
    return rows


def filing_rows(spec: DemoSpec, index: int) -> list[dict[str, object]]:
    _, corporate, risk = _latent(spec, index)
    if not corporate:
        return []
    rng = np.random.default_rng([spec.seed, index, 4])
    rows = []
    for number in range(int(rng.integers(0, 5))):
        form = _pick(rng, ("10-K", "10-Q", "10-Q", "8-K"))
        date = spec.as_of - dt.timedelta(days=int(rng.integers(1, 1100)))
        rows.append(
            {
                "filing_id": f"F{index:07d}-{number + 1}",
                "obligor_id": obligor_id(index),
                "filing_date": date,
                "form_type": form,
                "text": _filing_text(rng, risk + float(rng.normal(0, 0.4)), form),
            }
        )
    return rows


def _generator(spec: DemoSpec, kind: str):  # type: ignore[no-untyped-def]
    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows: list[dict[str, object]] = []
            for index in batch["id"].tolist():
                if kind == "portfolio":
                    rows.append(portfolio_row(spec, int(index)))
                elif kind == "outcomes":
                    rows.append(outcome_row(spec, int(index)))
                elif kind == "reports":
                    rows.extend(report_rows(spec, int(index)))
                else:
                    rows.extend(filing_rows(spec, int(index)))
            yield pd.DataFrame.from_records(rows, columns=_COLUMNS[kind])

    return generate


_SCHEMAS = {
    "portfolio": PORTFOLIO_SCHEMA,
    "outcomes": OUTCOME_SCHEMA,
    "reports": REPORT_SCHEMA,
    "filings": FILING_SCHEMA,
}
_COLUMNS = {
    kind: [part.split()[0] for part in schema.split(",")] for kind, schema in _SCHEMAS.items()
}


def generate(spark: SparkSession, kind: str, n_obligors: int, spec: DemoSpec) -> DataFrame:
    """One demo table as a DataFrame, generated on the executors."""
    partitions = max(1, min(64, n_obligors // 500))
    ids = spark.range(1, n_obligors + 1, numPartitions=partitions)
    return ids.mapInPandas(_generator(spec, kind), _SCHEMAS[kind])


def write_demo_tables(
    spark: SparkSession,
    *,
    database: str,
    n_obligors: int,
    spec: DemoSpec,
    filing_lookback_days: int,
) -> dict[str, int]:
    """Write portfolio, credit_reports, filings, outcomes and training_documents; row counts."""
    ensure_database(spark, database)
    names = {
        "portfolio": "portfolio",
        "reports": "credit_reports",
        "filings": "filings",
        "outcomes": "outcomes",
    }
    for kind, name in names.items():
        overwrite_table(generate(spark, kind, n_obligors, spec), f"{database}.{name}")
    portfolio = spark.table(f"{database}.portfolio")
    documents = assemble_documents(
        portfolio,
        spark.table(f"{database}.credit_reports"),
        spark.table(f"{database}.filings"),
        as_of=spec.observation_date,
        filing_lookback_days=filing_lookback_days,
    )
    outcomes = spark.table(f"{database}.outcomes").where(
        F.col("observation_date") == F.lit(spec.observation_date)
    )
    training = (
        documents.where(F.col("report_id").isNotNull())
        .join(outcomes, "obligor_id")
        .join(portfolio.select("obligor_id", "exposure", "region", *IDENTITY_COLUMNS), "obligor_id")
        .select(
            "obligor_id",
            "segment",
            "observation_date",
            F.col("document").alias("text"),
            "default_12m",
            "exposure",  # portfolio attributes, for training.data.features
            "region",
            *IDENTITY_COLUMNS,  # the known values of redaction
        )
    )
    overwrite_table(training, f"{database}.training_documents")
    counts = {}
    for name in [*names.values(), "training_documents"]:
        counts[name] = spark.table(f"{database}.{name}").count()
    return counts
