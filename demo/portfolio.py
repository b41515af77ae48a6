"""Synthetic but realistic demo data: portfolio, credit reports, filings and outcomes.

Every obligor is generated from its own seeded random streams (seed, obligor index, purpose), so
the data is the same whatever the partitioning, and generation runs distributed in
``mapInPandas``. Each obligor has a latent risk that moves year by year (a stationary AR(1)
path). The text of every report and filing reflects the latent at its own date, through signals
a reader understands (negations, magnitudes, covenants met or breached, going-concern language),
each said in several wordings. Three lines per report on account conduct (retail) or trading
(corporates) each state a routine fact or one of many rare signs of strain (a prepayment meter, a
doorstep lender; an auditor resigning, cash-on-delivery terms), the strain likelier the higher the
risk, so that obligors of middling risk read apart too. The 12-month default of each cohort is
drawn from the latent at the cohort date plus a small term the text does not see.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

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
BOILERPLATE = (
    "Our results depend on economic conditions and interest rates.",
    "We rely on a limited number of suppliers for key inputs.",
    "Changes in tax law or regulation could affect our reported results.",
    "A cyber incident could interrupt operations and lead to claims.",
    "Competition in our markets is intense and could reduce margins.",
    "Energy and commodity prices affect our input costs.",
)

# The wordings of each signal: one is drawn at random per document, so a reader has to know
# that they mean the same. Safe wordings often share words with risky ones (negation), and
# magnitudes (utilisation, days beyond terms, current ratio) are only numbers.
PAID_AS_AGREED = (
    "No late payments in the last 24 months.",
    "All accounts have been paid as agreed over the last 24 months.",
    "Not a single payment has been missed in the past two years.",
    "Every instalment in the last 24 months arrived on or before its due date.",
    "There are no past due amounts on any account.",
    "A clean repayment record: nothing overdue at any point since {since}.",
    "Lenders report no arrears over the past 24 months.",
    "The subject has always paid on time across all accounts.",
    "No account has been delinquent in the review period.",
)
PAID_LATE = (
    "Late payments in {n} of the last 24 months.",
    "{n} payments 30 to 59 days past due in the last 24 months.",
    "Payments were missed in {n} separate months, leaving balances past due.",
    "The subject fell behind on repayments {n} times in the last 24 months.",
    "Arrears were recorded on {n} occasions since {since}.",
    "{n} instalments arrived after their due date and were reported delinquent.",
    "Accounts were delinquent in {n} monthly cycles of the last 24.",
    "Repayments ran late {n} times over the review period; each was briefly past due.",
)
SEVERE = (
    "{n} accounts were 90 or more days delinquent and referred to a collection agency.",
    "{n} debts have been passed to a collection agency.",
    "A lender charged off a balance of {amount} in {year}.",
    "{n} accounts went more than 90 days past due and were defaulted.",
    "A debt collector is pursuing {n} unpaid balances.",
    "{n} facilities were closed by the lender after prolonged arrears.",
)
UTILISATION = (
    "Revolving utilisation is {u}% of total limits.",
    "Revolving utilisation stands at {u}% across {k} cards.",
    "Balances use {u}% of the available revolving credit.",
    "Revolving utilisation: the subject has drawn {u}% of combined card limits.",
    "Card debt amounts to {u}% of the credit available.",
    "Credit lines are {u}% used (revolving utilisation).",
    "{u}% of the revolving credit limit is in use.",
    "Revolving utilisation: {u}% of limits.",
)
MAXED_OUT = (
    "Several cards are at or above their credit limit.",
    "Two cards are maxed out, at or above their credit limit.",
    "Two accounts sit at or above their credit limit.",
    "Balances exceed the limit on one card.",
    "Only minimum payments are being made on the cards.",
)
NO_INQUIRIES = (
    "No hard inquiries in the last 6 months.",
    "No new credit applications in the past six months.",
    "No lender has searched the file this half year.",
    "There were no credit inquiries recently.",
)
INQUIRIES = (
    "{n} hard inquiries in the last 6 months.",
    "{n} credit inquiries by lenders in the past six months.",
    "Lenders searched the file {n} times in the last half year.",
    "{n} applications for new credit since {month} (hard inquiries).",
    "The subject applied for credit {n} times recently.",
    "{n} searches by lenders in six months, all hard inquiries.",
)
RETAIL_RECORD = (
    "Chapter 7 bankruptcy filed {year}, discharged.",
    "The subject is subject to a court judgment for unpaid debt, not yet satisfied.",
    "A county court judgment for {amount} was entered in {year} and remains unpaid.",
    "Personal bankruptcy declared in {year}.",
    "A tax lien of {amount} was registered in {year}.",
    "An insolvency arrangement with creditors was agreed in {year}.",
    "Creditors obtained a court judgment in {year}; the debt is outstanding.",
    "Declared insolvent in {year}; the arrangement is ongoing.",
)
RETAIL_CLEAN = (
    "No public records found.",
    "The subject has never been subject to a court judgment.",
    "No bankruptcy, judgment or lien on file.",
    "Public registers show nothing against the subject.",
    "There is no record of insolvency, liens or court judgments.",
    "Never declared bankrupt; no judgments registered.",
    "Searches of court and insolvency registers were clear.",
)
UNEMPLOYED = (
    "Currently unemployed; previous employment ended within the last year. Income not verified.",
    "Unemployed since {month}; living on benefits.",
    "Out of work since {year}; no payslips provided.",
    "Stated income could not be confirmed; income not verified.",
    "Between jobs; recent income not verified.",
    "Lost the position at {employer} in {year} and has not found new work.",
    "Self-reported income with no supporting documents and no current employer.",
)
EMPLOYED = (
    "Employed as {occupation} at {employer} for {years} years; stated annual income "
    "{income}, verified by payslips.",
    "Works as {occupation} at {employer} ({years} years); income of {income} confirmed by the "
    "employer.",
    "{years} years in a permanent role as {occupation}; salary {income}, verified.",
    "In steady employment as {occupation} with {employer} since {since}; income {income} "
    "documented.",
    "Holds a permanent {occupation} position at {employer}; annual pay {income} checked against "
    "bank statements.",
    "Salaried {occupation}, {years} years with the same employer; income verified at {income}.",
)
WITHIN_TERMS = (
    "Suppliers are paid within terms.",
    "Trade suppliers report prompt payment.",
    "Invoices are settled on time or early.",
    "No trade creditor reports late settlement.",
    "The company pays its suppliers by the agreed date.",
)
BEYOND_TERMS = (
    "Suppliers are paid on average {d} days beyond terms.",
    "Trade invoices are settled {d} days late on average.",
    "Average payment delay to suppliers: {d} days beyond terms.",
    "Creditors wait about {d} days after the due date for payment.",
    "Invoices run {d} days past due on average.",
    "The company takes {d} days longer than agreed to pay its suppliers.",
    "Supplier payments run {d} days beyond terms.",
)
FACILITIES = (
    "Committed facilities drawn to {f}%.",
    "The revolving facility is {f}% drawn.",
    "Bank facilities drawn: {f}% of the limits.",
    "{f}% of committed bank facilities are in use.",
    "Headroom under its credit lines is {h}% of the limits.",
    "Credit facilities drawn to {f}% of commitments.",
    "Committed facilities drawn: {f}%.",
)
BUSINESS_RECORD = (
    "Tax lien filed by the revenue authority; two trade creditors filed claims.",
    "A court judgment for {amount} was entered against the company in {year}.",
    "Winding-up petition presented by a supplier in {year}.",
    "The revenue authority registered a tax lien in {year}.",
    "Two creditors filed claims for unpaid invoices.",
    "A judgment creditor is enforcing an unpaid award of {amount}.",
)
BUSINESS_CLEAN = (
    "No liens, judgments or insolvency filings.",
    "The company has never been subject to a court judgment.",
    "Registers show no charges, liens or claims against the company.",
    "Clean public record.",
    "No insolvency or enforcement proceedings on file.",
    "No tax liens or court judgments recorded.",
)
NO_BUSINESS_INQUIRIES = (
    "No credit inquiries by lenders in the last 6 months.",
    "No lender has checked the company's file this half year.",
    "No new financing applications in six months.",
)
BUSINESS_INQUIRIES = (
    "{n} credit inquiries by lenders in the last 6 months.",
    "Lenders checked the company's file {n} times this half year.",
    "{n} credit inquiries from new lenders in six months.",
    "{n} credit inquiries since {month}.",
)
LIQUIDITY_WEAK = (
    "Our current ratio fell to {cr} and we are seeking additional financing.",
    "Current liabilities exceed current assets; the current ratio fell to {cr}.",
    "Cash covers about three months of operating expenses; the current ratio is {cr}.",
    "Working capital is negative, with a current ratio of {cr}.",
    "We are seeking additional financing to meet obligations as they fall due.",
    "Liquidity is tight: current assets cover {cr} times current liabilities.",
)
LIQUIDITY_FINE = (
    "Our current ratio was {cr} and undrawn committed facilities provide ample liquidity.",
    "Current assets cover current liabilities {cr} times.",
    "Liquidity remains comfortable with a current ratio of {cr}.",
    "Working capital is positive; the current ratio is {cr}.",
    "Cash and undrawn lines comfortably fund the next twelve months.",
    "We do not expect to seek additional financing; the current ratio is {cr}.",
)
LIQUIDITY_PLAIN = ("The current ratio at period end was {cr}.", "Current ratio: {cr}.")
COVENANT_BREACH = (
    "We did not meet the maximum leverage covenant; the lenders granted a temporary waiver.",
    "We breached the interest cover covenant at quarter end and obtained a waiver.",
    "The leverage test under our credit agreement was failed; lenders agreed to reset it.",
    "We did not meet the minimum liquidity covenant and are negotiating with lenders.",
    "Covenant headroom was exhausted and we requested a waiver from our banks.",
    "Our lenders have reserved their rights after a covenant default.",
)
COVENANT_MET = (
    "We were in compliance with all financial covenants.",
    "All covenant tests were met with comfortable headroom.",
    "We met every financial covenant under our credit agreements.",
    "There were no covenant breaches during the period.",
    "Leverage and interest cover remain well within covenant limits.",
    "We did not need any waiver from our lenders.",
)
GOING_CONCERN = (
    "These conditions raise substantial doubt about the Company's ability to continue as a "
    "going concern.",
    "Our auditors drew attention to a material uncertainty over the going concern basis.",
    "There is substantial doubt that we can meet our obligations as they fall due.",
    "A material uncertainty exists about our ability to continue operating.",
)
NO_GOING_CONCERN = (
    "Our auditors raised no going concern issue.",
    "The accounts are prepared on a going concern basis with no material uncertainty.",
)
LITIGATION = (
    "A former customer filed a claim alleging breach of contract and seeking material damages.",
    "A supplier has brought a claim alleging unpaid invoices of {amount}.",
    "We are defending a lawsuit from a former distributor; damages could be material.",
)
NO_LITIGATION = ("We are not party to any material litigation.",)

# Account conduct (retail) and trading (corporates): three lines per report, each a routine fact
# or a sign of strain, the strain likelier the higher the risk (CONDUCT). The signs are many and
# each is rare (a reader has to know that a prepayment meter and a doorstep lender mean the same
# thing), and they reach obligors of middling risk, whom the rarer signals above leave silent.
RETAIL_ROUTINE = (
    "The subject uses online banking.",
    "Statements are received electronically.",
    "The current account has been held for several years.",
    "The subject is on the electoral roll at this address.",
    "Salary is paid monthly into the current account.",
    "Groceries are mostly paid by debit card.",
    "A joint account is held with a partner.",
    "A car is owned outright.",
    "Insurance premiums are paid annually.",
    "A savings account is linked to the current account.",
    "The subject has lived at the same home for several years.",
    "Contact details were confirmed by phone.",
)
RETAIL_STRAIN = (
    "A utility company sent a final demand for an unpaid bill.",
    "An unpaid parking fine doubled after reminders were ignored.",
    "Several payday loans were taken out in quick succession.",
    "The subject entered a debt management plan.",
    "Rent was paid late and the landlord issued a warning.",
    "Gambling transactions appear on the bank statements every week.",
    "An unpaid gym membership was passed to a recovery firm.",
    "The subject borrowed from friends to pay the rent.",
    "The subject sold jewellery to pay household bills.",
    "The subject asked a debt charity for help with creditors.",
    "Direct debits to utility companies bounced twice.",
    "Cash advances were drawn on a credit card to pay other bills.",
    "The local authority chased unpaid council tax.",
    "A personal loan was taken out to consolidate other debts.",
    "The energy supplier installed a prepayment meter after unpaid bills.",
    "A family member has been making the subject's loan payments.",
    "A water bill has gone unpaid since the spring.",
    "A pawnbroker loan was renewed three times.",
    "Benefit payments are being deducted to repay an overpayment.",
    "Food bank vouchers were used this year.",
    "The subject borrowed from a doorstep lender this year.",
    "A request to freeze interest was made to every card issuer.",
    "Subscriptions were cancelled for lack of money.",
    "A payment holiday was requested on the mortgage because of hardship.",
)
BUSINESS_ROUTINE = (
    "The company operates from two sites.",
    "The board meets quarterly.",
    "The company employs staff in three regions.",
    "The company holds a quality management certification.",
    "Accounts are prepared under local accounting standards.",
    "The company banks with a national lender.",
    "The company has a website and an online shop.",
    "The registered office is at the main site.",
    "The company is owned by its founding family.",
    "Products are sold to trade customers and distributors.",
    "The company leases its delivery vehicles.",
    "The company's financial year ends in December.",
)
BUSINESS_STRAIN = (
    "A key supplier moved the company onto cash-on-delivery terms.",
    "Trade credit insurers cut their cover on the company.",
    "The company's auditor resigned during the year.",
    "The finance director left without a successor.",
    "Two directors resigned within a month.",
    "The company sold its head office and leased it back.",
    "An invoice finance facility was used to its limit.",
    "Staff wages were paid a week late once this year.",
    "The tax authority agreed a time-to-pay arrangement for VAT owed.",
    "The largest customer entered administration.",
    "The company asked its bank for an emergency overdraft.",
    "Restructuring advisers have been appointed.",
    "The shareholders injected emergency funds.",
    "Rent on the main warehouse was deferred by agreement with the landlord.",
    "A major contract was lost to a competitor.",
    "The company is in talks to sell a division to raise funds.",
    "A planned expansion was cancelled to preserve cash.",
    "The annual accounts were filed late at the registry.",
    "Pension contributions for staff were paused.",
    "The company's credit rating was downgraded by an agency.",
    "Suppliers now demand personal guarantees from the directors.",
    "A factory was mothballed.",
    "Short-time working was introduced at the main plant.",
    "The company drew on a shareholder loan to meet payroll.",
)
# Per segment, one (threshold, routine, strain) per line: a sign of strain when the report's
# reading of the latent plus N(0, CUE_NOISE) exceeds the threshold; no wording twice in a report.
CONDUCT = {
    "retail": tuple((t, RETAIL_ROUTINE, RETAIL_STRAIN) for t in (0.0, 0.5, 1.0)),
    "corporate": tuple((t, BUSINESS_ROUTINE, BUSINESS_STRAIN) for t in (0.0, 0.5, 1.0)),
}
CUE_NOISE = 0.7

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
OUTCOME_SCHEMA = "obligor_id string, observation_date date, default_12m int, oracle_pd double"

FIRST_YEAR = 2021  # the latent path starts here; earlier dates read this year's value
PERSISTENCE = 0.8  # AR(1): z_t = 0.8 z_{t-1} + 0.6 e_t keeps z_t ~ N(0, 1)
# 12-month PD = sigmoid(intercept + slope * latent + N(0, IDIOSYNCRATIC)), per segment.
INTERCEPT = {"retail": -5.0, "corporate": -5.8}
SLOPE = 1.8
IDIOSYNCRATIC = 0.5
READING_NOISE = 0.25  # how loosely a document's signals follow the latent at its date
LOOKBACK_YEARS = 2  # conf's filing_lookback_days (730): documents reach this far before a cohort


@dataclass(frozen=True)
class DemoSpec:
    seed: int = 7
    as_of: dt.date = dt.date(2026, 11, 28)
    # Outcome cohorts: a 12-month default per obligor and date.
    cohorts: tuple[dt.date, ...] = (dt.date(2024, 11, 28), dt.date(2025, 11, 28))
    corporate_share: float = 0.3
    # Population shift: added to every obligor's latent risk at every date (0: the reference
    # population). A positive shift makes riskier text and more defaults.
    shift: float = 0.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _say(rng: np.random.Generator, options: tuple[str, ...], **values: object) -> str:
    """One wording of a signal, drawn at random, with its values filled in."""
    return _pick(rng, options).format(**values)


def _amount(rng: np.random.Generator, mean_log: float) -> str:
    return f"{round(float(rng.lognormal(mean_log, 0.8)), -2):,.0f}"


def obligor_id(index: int) -> str:
    return f"OBL{index:07d}"


def _is_corporate(spec: DemoSpec, index: int) -> bool:
    return bool(np.random.default_rng([spec.seed, index]).random() < spec.corporate_share)


def latent_path(spec: DemoSpec, index: int) -> dict[int, float]:
    """The obligor's latent risk per calendar year (without the shift), FIRST_YEAR onwards."""
    rng = np.random.default_rng([spec.seed, index, 0])
    last = max(spec.as_of.year, *(c.year for c in spec.cohorts))
    z = float(rng.normal())
    path = {FIRST_YEAR: z}
    for year in range(FIRST_YEAR + 1, last + 1):
        z = PERSISTENCE * z + math.sqrt(1 - PERSISTENCE**2) * float(rng.normal())
        path[year] = z
    return path


def latent_at(path: dict[int, float], spec: DemoSpec, date: dt.date) -> float:
    """The latent risk on a date: the value of its year (clamped to the path), plus the shift."""
    year = min(max(date.year, FIRST_YEAR), max(path))
    return path[year] + spec.shift


def identity(spec: DemoSpec, index: int) -> dict[str, object]:
    """What the bank holds about who the obligor is (personal data): the same in the portfolio
    table and in every report, for redaction's known values."""
    corporate = _is_corporate(spec, index)
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
    corporate = _is_corporate(spec, index)
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


def oracle_pd(spec: DemoSpec, index: int, cohort: dt.date) -> float:
    """The generator's own 12-month PD from ``cohort``: the latent then, plus a term per obligor
    and cohort that no document sees."""
    segment = "corporate" if _is_corporate(spec, index) else "retail"
    rng = np.random.default_rng([spec.seed, index, 2, cohort.toordinal()])
    risk = latent_at(latent_path(spec, index), spec, cohort)
    return _sigmoid(INTERCEPT[segment] + SLOPE * risk + float(rng.normal(0.0, IDIOSYNCRATIC)))


def outcome_rows(spec: DemoSpec, index: int) -> list[dict[str, object]]:
    """One row per cohort: the default within 12 months, Bernoulli(oracle_pd)."""
    rows = []
    for cohort in spec.cohorts:
        p_default = oracle_pd(spec, index, cohort)
        rng = np.random.default_rng([spec.seed, index, 6, cohort.toordinal()])
        rows.append(
            {
                "obligor_id": obligor_id(index),
                "observation_date": cohort,
                "default_12m": int(rng.random() < p_default),
                "oracle_pd": p_default,
            }
        )
    return rows


def _years_back(spec: DemoSpec) -> int:
    """Years before as_of that reports and filings cover: 3, or the filings lookback (two years)
    before the first cohort, so that every cohort's documents hold as many filings."""
    first = min(spec.cohorts, default=spec.as_of)
    return max(3, (spec.as_of - first).days // 365 + LOOKBACK_YEARS)


def _dates_per_year(
    rng: np.random.Generator, spec: DemoSpec, chance: float, extra: float
) -> list[dt.date]:
    """Dates spread over the years before as_of: in each 365-day window, one with probability
    ``chance`` and a second with probability ``extra``."""
    dates = []
    for year in range(_years_back(spec)):
        end = spec.as_of - dt.timedelta(days=365 * year)
        for _ in range(int(rng.random() < chance) + int(rng.random() < extra)):
            # At least 3 days before the window's end: a report is pulled before scoring.
            dates.append(end - dt.timedelta(days=int(rng.integers(3, 365))))
    return sorted(dates)


def _conduct(rng: np.random.Generator, risk: float, segment: str) -> list[str]:
    """One line per entry of CONDUCT[segment]: a routine fact, or a sign of strain when the
    report's reading of the latent (plus noise) passes the entry's threshold."""
    lines: list[str] = []
    for threshold, routine, strain in CONDUCT[segment]:
        pool = strain if risk + rng.normal(0, CUE_NOISE) > threshold else routine
        lines.append(_pick(rng, tuple(w for w in pool if w not in lines)))
    return lines


def _retail_report(
    rng: np.random.Generator,
    risk: float,
    report_id: str,
    date: dt.date,
    who: dict[str, object],
    conduct: list[str],
) -> str:
    late = int(rng.poisson(math.exp(1.1 * risk - 1.4)))
    severe = int(rng.poisson(math.exp(1.3 * risk - 3.2)))
    utilisation = int(np.clip(round(100 * _sigmoid(1.1 * risk - 0.5 + rng.normal(0, 0.5))), 1, 99))
    inquiries = int(rng.poisson(math.exp(0.6 * risk - 0.2)))
    since = date.year - 2
    year = date.year - int(rng.integers(0, 3))
    month = (date - dt.timedelta(days=int(rng.integers(30, 300)))).strftime("%B %Y")
    payment = (
        _say(rng, PAID_LATE, n=late, since=since)
        if late
        else _say(rng, PAID_AS_AGREED, since=since)
    )
    if severe:
        payment += " " + _say(rng, SEVERE, n=severe, amount=_amount(rng, 7.5), year=year)
    usage = _say(rng, UTILISATION, u=utilisation, k=1 + int(rng.integers(5)))
    if utilisation > 85 and rng.random() < 0.6:
        usage += " " + _pick(rng, MAXED_OUT)
    asked = (
        _say(rng, INQUIRIES, n=inquiries, month=month) if inquiries else _pick(rng, NO_INQUIRIES)
    )
    if risk + rng.normal(0, 0.5) > 2.0:
        record = _say(rng, RETAIL_RECORD, year=year, amount=_amount(rng, 8.0))
    else:
        record = _pick(rng, RETAIL_CLEAN)
    if risk + rng.normal(0, 0.6) > 1.8:
        work = _say(rng, UNEMPLOYED, month=month, year=date.year, employer=_pick(rng, EMPLOYERS))
    else:
        work = _say(
            rng,
            EMPLOYED,
            occupation=_pick(rng, OCCUPATIONS),
            employer=_pick(rng, EMPLOYERS),
            years=max(1, int(rng.normal(8 - 2.5 * risk, 3))),
            since=date.year - max(1, int(rng.normal(8 - 2.5 * risk, 3))),
            income=f"{round(float(rng.lognormal(10.7 - 0.15 * risk, 0.3)), -2):,.0f}",
        )
    return "\n".join(
        [
            "CONSUMER CREDIT REPORT",
            f"Report reference {report_id}, prepared {date.isoformat()}.",
            f"Subject: {who['legal_name']}, date of birth {who['birth_date']}, residing at "
            f"{who['street_address']}.",
            "",
            "PAYMENT HISTORY",
            payment,
            "",
            "UTILISATION",
            usage,
            "",
            "ACCOUNT CONDUCT",
            *conduct,
            "",
            "INQUIRIES",
            asked,
            "",
            "PUBLIC RECORDS",
            record,
            "",
            "EMPLOYMENT AND INCOME",
            work,
        ]
    )


def _business_report(
    rng: np.random.Generator,
    risk: float,
    report_id: str,
    date: dt.date,
    who: dict[str, object],
    conduct: list[str],
) -> str:
    days = round(float(rng.normal(2 + 11 * risk, 6)))
    drawn = int(np.clip(round(100 * _sigmoid(1.1 * risk - 0.4 + rng.normal(0, 0.5))), 1, 99))
    inquiries = int(rng.poisson(math.exp(0.5 * risk + 0.3)))
    year = date.year - int(rng.integers(0, 3))
    month = (date - dt.timedelta(days=int(rng.integers(30, 180)))).strftime("%B %Y")
    if risk + rng.normal(0, 0.5) > 1.9:
        record = _say(rng, BUSINESS_RECORD, year=year, amount=_amount(rng, 10.0))
    else:
        record = _pick(rng, BUSINESS_CLEAN)
    return "\n".join(
        [
            "BUSINESS CREDIT REPORT",
            f"Report reference {report_id}, prepared {date.isoformat()}.",
            f"Company: {who['legal_name']}; director {who['contact_name']}.",
            "",
            "PAYMENT HISTORY",
            _say(rng, BEYOND_TERMS, d=days) if days > 3 else _pick(rng, WITHIN_TERMS),
            "",
            "UTILISATION",
            _say(rng, FACILITIES, f=drawn, h=100 - drawn),
            "",
            "TRADING",
            *conduct,
            "",
            "PUBLIC RECORDS",
            record,
            "",
            "INQUIRIES",
            _say(rng, BUSINESS_INQUIRIES, n=inquiries, month=month)
            if inquiries
            else _pick(rng, NO_BUSINESS_INQUIRIES),
        ]
    )


def _filing_text(rng: np.random.Generator, risk: float, form: str) -> str:
    ratio = max(0.2, float(rng.normal(1.8 - 0.55 * risk, 0.25)))
    cr = f"{ratio:.2f}"
    if rng.random() < 0.25:
        liquidity = _say(rng, LIQUIDITY_PLAIN, cr=cr)
    else:
        liquidity = _say(rng, LIQUIDITY_WEAK if ratio < 1.0 else LIQUIDITY_FINE, cr=cr)
    paragraphs = [
        f"FORM {form}. Management's discussion and analysis.",
        "LIQUIDITY. " + liquidity,
        "COVENANTS. "
        + _pick(rng, COVENANT_BREACH if risk + rng.normal(0, 0.5) > 1.2 else COVENANT_MET),
    ]
    if risk + rng.normal(0, 0.4) > 2.0:
        paragraphs.append("GOING CONCERN. " + _pick(rng, GOING_CONCERN))
    elif rng.random() < 0.2:
        paragraphs.append("GOING CONCERN. " + _pick(rng, NO_GOING_CONCERN))
    if rng.random() < 0.08 + 0.15 * max(0.0, risk):
        paragraphs.append("LITIGATION. " + _say(rng, LITIGATION, amount=_amount(rng, 11.0)))
    elif rng.random() < 0.2:
        paragraphs.append("LITIGATION. " + _pick(rng, NO_LITIGATION))
    for _ in range(int(rng.integers(0, 2))):
        paragraphs.append("RISK FACTORS. " + _pick(rng, BOILERPLATE))
    return "\n\n".join(paragraphs)


def report_rows(spec: DemoSpec, index: int) -> list[dict[str, object]]:
    """Credit reports spread over the years before as_of; each reads the latent at its date."""
    corporate = _is_corporate(spec, index)
    path = latent_path(spec, index)
    rng = np.random.default_rng([spec.seed, index, 3])
    who = identity(spec, index)
    dates = _dates_per_year(rng, spec, chance=0.92, extra=0.15) or [spec.as_of]
    write = _business_report if corporate else _retail_report
    rows = []
    for number, date in enumerate(dates):
        report_id = f"R{index:07d}-{number + 1}"
        risk = latent_at(path, spec, date) + float(rng.normal(0.0, READING_NOISE))
        # The conduct lines from a stream of their own: the rest of the report is drawn as
        # before they existed.
        cues = np.random.default_rng([spec.seed, index, 7, number])
        conduct = _conduct(cues, risk, "corporate" if corporate else "retail")
        rows.append(
            {
                "report_id": report_id,
                "obligor_id": obligor_id(index),
                "report_date": date,
                "text": write(rng, risk, report_id, date, who, conduct),
            }
        )
    return rows


def filing_rows(spec: DemoSpec, index: int) -> list[dict[str, object]]:
    """Corporates' filings, about one every two years, each reading the latent at its date."""
    if not _is_corporate(spec, index):
        return []
    path = latent_path(spec, index)
    rng = np.random.default_rng([spec.seed, index, 4])
    rows = []
    for number, date in enumerate(_dates_per_year(rng, spec, chance=0.5, extra=0.0)):
        form = _pick(rng, ("10-K", "10-Q", "10-Q", "8-K"))
        risk = latent_at(path, spec, date) + float(rng.normal(0.0, READING_NOISE))
        rows.append(
            {
                "filing_id": f"F{index:07d}-{number + 1}",
                "obligor_id": obligor_id(index),
                "filing_date": date,
                "form_type": form,
                "text": _filing_text(rng, risk, form),
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
                    rows.extend(outcome_rows(spec, int(index)))
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
    """Write portfolio, credit_reports, filings and outcomes; their row counts.

    ``filing_lookback_days`` is kept for callers; the tables do not depend on it.
    """
    ensure_database(spark, database)
    names = {
        "portfolio": "portfolio",
        "reports": "credit_reports",
        "filings": "filings",
        "outcomes": "outcomes",
    }
    for kind, name in names.items():
        overwrite_table(generate(spark, kind, n_obligors, spec), f"{database}.{name}")
    return {name: spark.table(f"{database}.{name}").count() for name in names.values()}
