"""Personal data out of the text before the model: one redaction step for training, scoring,
explanations and robustness checks.

Names, addresses, birth dates, national identifiers, phone numbers, e-mail addresses and account
numbers become typed placeholders (``[NAME]``, ``[ADDRESS]``, ...). The obligor's own values,
where the bank's tables hold them (``redaction.known_columns``), are replaced first, wherever
they occur; then the conf's patterns. The rules are hashed into the model's manifest
(``rules_record``): scoring refuses a model trained under other rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType

from riskudf.config import RedactionConf
from riskudf.model.artifact import ArtifactError, Manifest

# Bumped when what the code does with the same rules changes (a model trained before then is
# refused like one trained under other rules).
ALGORITHM_VERSION = 1
REDACTED_TYPE = StructType(
    [
        StructField("document", StringType()),
        StructField("redactions", ArrayType(IntegerType())),
    ]
)


def placeholder(kind: str) -> str:
    return f"[{kind}]"


def rules_record(conf: RedactionConf) -> dict[str, Any]:
    """What a manifest records: the algorithm version, the rules, the known-value columns, and
    the sha256 that scoring compares (of the algorithm, rules and min_known_chars)."""
    rules = [{"kind": r.kind, "patterns": list(r.patterns)} for r in conf.rules]
    body = {"algorithm": ALGORITHM_VERSION, "rules": rules, "min_known_chars": conf.min_known_chars}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    # Which columns held known values is recorded, not compared: tables differ between training
    # and scoring, the placeholders do not.
    known = {kind: list(columns) for kind, columns in sorted(conf.known_columns.items())}
    return {**body, "known_columns": known, "sha256": digest}


def check_model_rules(manifest: Manifest, conf: RedactionConf) -> None:
    """Refuse a model whose training text went through other redaction rules than ``conf``'s
    (or none): its inputs at scoring would not look like the ones it learned from."""
    expected = rules_record(conf)["sha256"]
    recorded = manifest.redaction.get("sha256")
    if recorded is None:
        raise ArtifactError(
            f"model {manifest.model_version} was trained without redaction (its manifest records "
            "no redaction rules): retrain it under this config's redaction rules"
        )
    if recorded != expected:
        raise ArtifactError(
            f"model {manifest.model_version} was trained under redaction rules {recorded[:12]}, "
            f"this config's are {expected[:12]} (redaction.rules, known_columns or "
            "min_known_chars differ): score with the rules it was trained under, or retrain"
        )


def _known_pattern(value: str) -> re.Pattern[str]:
    """A known value anywhere, case-insensitive, whole words, any run of spaces inside."""
    words = [re.escape(w) for w in value.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Redactor:
    """Compiled rules. ``kinds``: the order of the counts that ``redact`` returns (the rules'
    kinds, then the known-value kinds that have no rule)."""

    rules: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...]
    kinds: tuple[str, ...]
    min_known_chars: int

    @classmethod
    def of(cls, conf: RedactionConf) -> Redactor:
        rules = tuple((r.kind, tuple(re.compile(p) for p in r.patterns)) for r in conf.rules)
        kinds = tuple(dict.fromkeys([k for k, _ in rules] + sorted(conf.known_columns)))
        return cls(rules, kinds, conf.min_known_chars)

    def redact(
        self, text: str, known: Mapping[str, Sequence[str | None]] | None = None
    ) -> tuple[str, list[int]]:
        """``text`` with personal data replaced, and the replacements per kind (``kinds``).

        ``known``: per kind, the obligor's own values (None and short values are skipped);
        longer values first, so a full name goes before a part of it.
        """
        counts = dict.fromkeys(self.kinds, 0)
        values = [
            (kind, value.strip())
            for kind, found in (known or {}).items()
            for value in found
            if value is not None and len(value.strip()) >= self.min_known_chars
        ]
        for kind, value in sorted(values, key=lambda kv: -len(kv[1])):
            text, n = _known_pattern(value).subn(placeholder(kind), text)
            counts[kind] += n
        for kind, patterns in self.rules:
            for pattern in patterns:
                text, n = _substitute(pattern, placeholder(kind), text)
                counts[kind] += n
        return text, [counts[k] for k in self.kinds]

    def redact_texts(
        self,
        texts: Sequence[str],
        known: pd.DataFrame | None,
        known_columns: Mapping[str, Sequence[str]],
    ) -> tuple[list[str], list[list[int]]]:
        """``redact`` over a column of texts; ``known`` holds ``known_columns``' columns (those
        it has), one row per text."""
        present = {
            kind: [c for c in columns if known is not None and c in known.columns]
            for kind, columns in known_columns.items()
        }
        out: list[str] = []
        counts: list[list[int]] = []
        for i, text in enumerate(texts):
            values = None
            if known is not None:
                values = {
                    kind: [_as_text(known[c].iat[i]) for c in columns]
                    for kind, columns in present.items()
                }
            redacted, n = self.redact(text, values)
            out.append(redacted)
            counts.append(n)
        return out, counts


def _as_text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


def _substitute(pattern: re.Pattern[str], token: str, text: str) -> tuple[str, int]:
    """Replace each match (its group only, when the pattern has one)."""
    if pattern.groups == 0:
        return pattern.subn(token, text)

    replaced = 0

    def keep_context(match: re.Match[str]) -> str:
        nonlocal replaced
        start, end = match.span(1)
        whole = match.group(0)
        if start < 0:  # an optional group that took no part: nothing to replace
            return whole
        replaced += 1
        offset = match.start(0)
        return whole[: start - offset] + token + whole[end - offset :]

    return pattern.sub(keep_context, text), replaced


def known_columns_in(conf: RedactionConf, columns: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The conf's known-value columns that a table has, per kind (kinds with none left out)."""
    found = {k: tuple(c for c in cols if c in columns) for k, cols in conf.known_columns.items()}
    return {k: cols for k, cols in found.items() if cols}


def redact_documents(
    documents: DataFrame, portfolio: DataFrame, conf: RedactionConf
) -> tuple[DataFrame, tuple[str, ...]]:
    """``documents`` with ``document`` redacted and a ``redactions`` column (counts per kind,
    in the order returned), the obligor's known values joined from ``portfolio``."""
    redactor = Redactor.of(conf)
    known = known_columns_in(conf, portfolio.columns)
    columns = sorted({c for cols in known.values() for c in cols})
    udf = make_redact_udf(redactor, known)
    joined = documents
    if columns:
        values = portfolio.select(
            "obligor_id", *[F.col(c).cast("string").alias(f"_known_{c}") for c in columns]
        )
        joined = documents.join(values, "obligor_id", "left")
    struct: Column = (
        F.struct(*[F.col(f"_known_{c}").alias(c) for c in columns])
        if columns
        else F.struct(F.lit(None).cast("string").alias("_none"))
    )
    redacted = joined.withColumn("_redacted", udf(F.col("document"), struct))
    out = redacted.withColumns(
        {"document": F.col("_redacted.document"), "redactions": F.col("_redacted.redactions")}
    ).drop("_redacted", *[f"_known_{c}" for c in columns])
    return out, redactor.kinds


def make_redact_udf(redactor: Redactor, known: Mapping[str, Sequence[str]]) -> Any:
    """A pandas UDF (document, struct of known columns) -> struct<document, redactions>."""

    @pandas_udf(REDACTED_TYPE)  # type: ignore[call-overload]
    def redact(batches: Iterator[tuple[pd.Series, pd.DataFrame]]) -> Iterator[pd.DataFrame]:
        for documents, values in batches:
            texts = documents.fillna("").astype(str).tolist()
            redacted, counts = redactor.redact_texts(texts, values, known)
            yield pd.DataFrame({"document": redacted, "redactions": counts})

    return redact
