"""Typed, validated configuration loaded once from ``conf/<env>.yaml``.

YAML holds values only. Unknown keys, missing required keys and wrong types are errors that
name the offending key, so a typo in a nightly job's config fails before anything runs.

A file may name a base with a top-level ``base: base.yaml`` (a path relative to the file's
folder). The base is loaded first (it may have a base of its own; a cycle is an error), then the
file's keys are merged over it: mappings merge key by key, anything else (lists, scalars, null)
replaces the base's value. The merged mapping is validated as one config. A file without
``base`` is a whole config on its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from riskudf.documents.windows import SEGMENT_BREAKS
from riskudf.model.features import Pooling


class _Conf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """The config file is missing, malformed or holds unknown or mistyped keys."""


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class TablesConf(_Conf):
    database: str = "risk"
    portfolio: str = "portfolio"
    credit_reports: str = "credit_reports"
    filings: str = "filings"
    outcomes: str = "outcomes"
    scored_portfolio: str = "scored_portfolio"
    score_runs: str = "score_runs"
    scoring_quarantine: str = "scoring_quarantine"
    scoring_locks: str = "scoring_locks"
    scoring_lock_releases: str = "scoring_lock_releases"
    monitor_alerts: str = "monitor_alerts"
    monitor_runs: str = "monitor_runs"
    alert_actions: str = "alert_actions"
    model_registry: str = "model_registry"
    model_aliases: str = "model_aliases"
    model_promotions: str = "model_promotions"
    model_robustness: str = "model_robustness"
    shadow_scores: str = "shadow_scores"
    monitor_shadow: str = "monitor_shadow"
    scored_history: str = "scored_history"
    training_documents: str = "training_documents"  # written by jobs/build_training_set.py
    retention_days: int = Field(
        default=2557,
        gt=0,
        description="every run's scored rows (scored_history) and the run log are kept this "
        "long, superseded runs included; 2557 days: 7 years",
    )

    @field_validator("*")
    @classmethod
    def _plain_identifier(cls, value: object) -> object:
        # Names go into SQL and into the views BI users query: letters, digits and underscores
        # only, so that no quote, semicolon or space can end a statement or start another.
        if isinstance(value, str) and not IDENTIFIER.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a plain identifier (letters, digits and underscores, not "
                "starting with a digit, at most 128 characters)"
            )
        return value

    def qualified(self, table: str) -> str:
        """``database.table`` for one of the table names above."""
        return f"{self.database}.{getattr(self, table)}"


class GradeBand(_Conf):
    grade: str
    upper_pd: float = Field(gt=0.0, le=1.0, description="exclusive upper PD bound; 1.0 closes")


class GradingConf(_Conf):
    master_scale: tuple[GradeBand, ...]
    review_from_pd: float = Field(ge=0.0, le=1.0)
    decline_from_pd: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_scale(self) -> GradingConf:
        uppers = [band.upper_pd for band in self.master_scale]
        if not uppers:
            raise ValueError("master_scale must list at least one band")
        if any(b <= a for a, b in pairwise(uppers)):
            raise ValueError(f"master_scale upper_pd must increase strictly, got {uppers}")
        if uppers[-1] != 1.0:
            raise ValueError("the last master_scale band must have upper_pd 1.0")
        if len({band.grade for band in self.master_scale}) != len(uppers):
            raise ValueError("master_scale grades must be unique")
        if self.review_from_pd > self.decline_from_pd:
            raise ValueError("review_from_pd must not exceed decline_from_pd")
        return self


class GpuConf(_Conf):
    """GPUs for the scoring stage only (stage-level scheduling, see docs/operations.md).

    Executors own ``executor_gpus`` each (found by ``discovery_script``); only the scoring stage
    asks ``task_gpus`` per task, so reading and assembly still run one task per core.
    """

    executor_gpus: int = Field(default=1, gt=0, description="GPUs per executor")
    task_gpus: float = Field(default=1.0, gt=0, le=1, description="GPUs per scoring task")
    task_cpus: int = Field(default=1, gt=0, description="cores per scoring task")
    discovery_script: str | None = Field(
        default=None,
        description="prints {name: gpu, addresses: [...]}; null where the cluster manager "
        "assigns the addresses (a standalone worker's own resources)",
    )

    def spark_settings(self) -> dict[str, str]:
        """The executor-level Spark settings; the task amount goes in the stage's profile."""
        settings = {"spark.executor.resource.gpu.amount": str(self.executor_gpus)}
        if self.discovery_script is not None:
            settings["spark.executor.resource.gpu.discoveryScript"] = self.discovery_script
        return settings


class ScoringConf(_Conf):
    model: str = Field(
        validation_alias=AliasChoices("model", "model_dir"),
        description="name@alias (a version of the model_aliases table, e.g. demo@champion) or a "
        "model directory; model_dir is the older spelling",
    )
    filing_lookback_days: int = Field(default=730, gt=0)
    token_budget: int = Field(default=8192, gt=0, description="padded tokens per forward pass")
    arrow_batch_rows: int = Field(default=2048, gt=0)
    arrow_batch_bytes: int = Field(
        default=16 * 1024 * 1024,
        gt=0,
        lt=2**31 - 1,
        description="bytes per Arrow batch handed to the UDF (whichever of rows and bytes "
        "comes first): bounds a Python worker's memory with long documents",
    )
    partitions: int = Field(default=0, ge=0, description="0: Spark's default parallelism")
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        default="auto", description="auto: the fastest within 1e-3 of fp32 on this hardware"
    )
    gpu: GpuConf | None = Field(default=None, description="null: score on the CPU")
    max_document_chars: int = Field(
        default=200_000, gt=0, description="hard cap; longer documents are quarantined"
    )
    lock_lease_minutes: float = Field(
        default=360, gt=0, description="a run's hold on its as-of date lapses after this"
    )
    lock_heartbeat_seconds: float = Field(
        default=60, gt=0, description="a live run renews its hold this often"
    )
    timezone: str = Field(
        default="UTC", description="the lender's time zone: its business date is 'today'"
    )
    reproduce_pd_tolerance: float = Field(
        default=1e-6,
        ge=0,
        description="--reproduce: a row differs when its PD moves by more than this, or its "
        "grade or decision changes (batching moves floats by ~1e-7)",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model" in data and "model_dir" in data:
            raise ValueError("give scoring.model or scoring.model_dir (its older name), not both")
        return data

    @model_validator(mode="after")
    def _check_heartbeat(self) -> ScoringConf:
        # At most half the lease: one slow or failed renewal must not cost the run its date.
        if self.lock_heartbeat_seconds * 2 > self.lock_lease_minutes * 60:
            raise ValueError(
                f"lock_heartbeat_seconds ({self.lock_heartbeat_seconds:g}) must be at most half "
                f"of lock_lease_minutes ({self.lock_lease_minutes:g} min)"
            )
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Asia/Singapore)"
            ) from None
        return value


class ReasonCodeConf(_Conf):
    """One reason code: a span of the document whose text matches a pattern gets this code."""

    code: str = Field(min_length=1, description="stable code, e.g. DELINQUENCY")
    description: str = Field(min_length=1, description="short text for the applicant/analyst")
    patterns: tuple[str, ...] = Field(
        min_length=1, description="regular expressions, searched case-insensitively in a span"
    )

    @model_validator(mode="after")
    def _check_patterns(self) -> ReasonCodeConf:
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"reason {self.code}: bad pattern {pattern!r}: {exc}") from None
        return self


class ReasonsConf(_Conf):
    """Reason codes for flagged decisions, computed in the scoring pass
    (riskudf/scoring/reasons.py).

    Each sentence or line of a flagged document is removed in turn (occlusion); its weight is
    the PD drop. Spans matching a library pattern (first code in library order) keep their
    code; a code's weight is its largest span weight; positive weights only, largest first.
    """

    enabled: bool = Field(default=False, description="false: reasons is null on every row")
    decisions: tuple[Literal["approve", "review", "decline"], ...] = Field(
        default=("review", "decline"), description="decisions that get reasons"
    )
    max_reasons: int = Field(default=4, gt=0, le=4)
    method: Literal["occlusion"] = Field(
        default="occlusion", description="remove each span, measure the PD drop"
    )
    library: tuple[ReasonCodeConf, ...] = ()

    @model_validator(mode="after")
    def _check_library(self) -> ReasonsConf:
        codes = [reason.code for reason in self.library]
        if len(set(codes)) != len(codes):
            raise ValueError(f"reason codes must be unique, got {codes}")
        if self.enabled and not codes:
            raise ValueError("reasons.enabled needs a library of at least one code")
        if self.enabled and not self.decisions:
            raise ValueError("reasons.enabled needs at least one decision")
        return self


# The built-in redaction rules (docs/design.md, Personal data): a pattern with a group replaces
# the group only, so the context word ("born", "Subject:") stays and tells the model a value was
# there. Applied after the obligor's own known values.
_NAME_WORD = r"(?:[A-Z](?:\.|[\w'-]*)|van|von|de|da|del|der|bin|al)"
_NAME_WORDS = r"(?!(?:Mr|Mrs|Ms|Miss|Dr|Prof)\b)[A-Z](?:\.|[\w'-]*)(?:[ -]" + _NAME_WORD + ")*"
DEFAULT_REDACTION_RULES: tuple[dict[str, Any], ...] = (
    {"kind": "EMAIL", "patterns": [r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"]},
    {
        "kind": "BIRTH_DATE",
        "patterns": [
            r"(?i:\bborn|\bdate of birth|\bd\.o\.b\.?|\bDOB|\bbirth date)[:\s]+"
            r"(\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}"
            r"|\d{1,2}\s+[A-Za-z]+\s+\d{4}|[A-Za-z]+\s+\d{1,2},?\s+\d{4}|\d{4})",
            r"(?i:\baged?)[:\s]+(\d{1,3})\b",
        ],
    },
    {
        "kind": "NATIONAL_ID",
        "patterns": [
            r"\b\d{3}-\d{2}-\d{4}\b",  # US SSN
            r"\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b",  # UK NINO
            r"(?i:\b(?:national id|passport|tax id|id number|ssn)(?: number| no\.?)?)[:\s]+"
            r"([A-Z0-9][A-Z0-9 -]{4,}[A-Z0-9])",
        ],
    },
    {
        "kind": "ACCOUNT",
        "patterns": [
            r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b",  # IBAN
            r"\b\d{4}(?:[ -]?\d{4}){3}\b",  # card number
            r"(?i:\b(?:account|acct|sort code)(?: number| no\.?)?)[:\s#]+(\d[\d -]{4,}\d)",
        ],
    },
    {
        "kind": "PHONE",
        "patterns": [
            r"\+\d{1,3}[\s\d()-]{6,}\d",
            r"(?i:\b(?:tel|phone|telephone|mobile|fax)\.?)[:\s]+(\(?\d[\d\s()-]{5,}\d)",
        ],
    },
    {
        "kind": "ADDRESS",
        "patterns": [
            r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][\w'-]*\s+){0,3}(?:Street|St|Road|Rd|Lane|Ln|"
            r"Avenue|Ave|Drive|Dr|Way|Boulevard|Blvd|Court|Ct|Place|Pl|Square|Close|Crescent|"
            r"Terrace|Hill|Row|Walk|Gardens|Parade)\b",
            r"\b\d{1,5}[A-Za-z]?,?\s+[A-Z][\w'-]*(?:way|gate|side|field|wood|ford|bridge)\b",
            r"(?i:\b(?:residing at|resides at|address|lives at))[:\s]+(?!\[)([^.;\n]{3,80})",
        ],
    },
    {
        "kind": "NAME",
        "patterns": [
            r"(?:\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+)(" + _NAME_WORDS + ")",
            r"(?i:\b(?:subject|name|applicant|borrower|guarantor|holder|director|officer|"
            r"signed by|contact|account holder|spouse)\b)[:\s]+"
            r"(?:(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+)?(" + _NAME_WORDS + ")",
            r"(?i:\bcompany)[:\s]+(" + _NAME_WORDS + ")",
        ],
    },
)


class RedactionRuleConf(_Conf):
    """One kind of personal data: text matching a pattern becomes ``[KIND]``."""

    kind: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="placeholder name, e.g. NAME")
    patterns: tuple[str, ...] = Field(
        min_length=1,
        description="regular expressions (Python); with a group, only the group is replaced",
    )

    @model_validator(mode="after")
    def _check_patterns(self) -> RedactionRuleConf:
        for pattern in self.patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction {self.kind}: bad pattern {pattern!r}: {exc}") from None
            if compiled.groups > 1:
                raise ValueError(
                    f"redaction {self.kind}: pattern {pattern!r} has more than one group"
                )
        return self


class RedactionConf(_Conf):
    """Personal data out of the text before the model (riskudf/documents/redact.py).

    ``known_columns``: per kind, columns of the portfolio table (and of the training table)
    holding the obligor's own values; where a table has them, those values are replaced
    wherever they occur. ``rules``: the patterns applied after them; null: the built-in set.
    The rules are recorded in the model's manifest, and scoring refuses a model trained under
    other rules.
    """

    known_columns: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    rules: tuple[RedactionRuleConf, ...] = Field(
        default_factory=lambda: tuple(RedactionRuleConf(**r) for r in DEFAULT_REDACTION_RULES)
    )
    min_known_chars: int = Field(
        default=4, ge=1, description="known values shorter than this are not searched for"
    )

    @model_validator(mode="after")
    def _check(self) -> RedactionConf:
        kinds = [rule.kind for rule in self.rules]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"redaction kinds must be unique, got {kinds}")
        for kind, columns in self.known_columns.items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", kind):
                raise ValueError(f"redaction.known_columns: kind {kind!r} is not like NAME")
            for column in columns:
                if not IDENTIFIER.fullmatch(column):
                    raise ValueError(f"redaction.known_columns.{kind}: {column!r} is no column")
        return self


class LoraConf(_Conf):
    """LoRA adapters (peft) for ``training.method: lora``; merged into the weights at publish."""

    r: int = Field(default=8, gt=0, description="rank of the update matrices")
    alpha: int = Field(default=16, gt=0, description="scaling: the update is alpha / r * BA")
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: tuple[str, ...] = Field(
        default=("query", "value"), description="names of the Linear layers that get adapters"
    )


class CandidateConf(_Conf):
    """One training candidate: what it changes in ``training`` (the rest is shared)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="in the manifest and card")
    method: Literal["full", "lora", "frozen", "probe"] | None = None
    learning_rate: float | None = Field(default=None, gt=0)
    epochs: int | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    pooling: Pooling | None = Field(
        default=None, description="data.features.pooling for this candidate (null: the conf's)"
    )


class FeaturesConf(_Conf):
    """Structured columns of the training table fused with the text (empty: text only)."""

    numeric: tuple[str, ...] = Field(
        default=(), description="standardised on the train split; null -> 0 + missing flag"
    )
    categorical: tuple[str, ...] = Field(
        default=(), description="one-hot over the train split's values; unseen/null -> other"
    )
    pooling: Pooling = Field(
        default="mean",
        description="text embedding: mean of the tokens, the [CLS] token, or (method probe) the "
        "mean over the document's line (or paragraph) windows of each window's token mean",
    )

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @model_validator(mode="after")
    def _check_columns(self) -> FeaturesConf:
        repeated = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if repeated:
            raise ValueError(f"features: columns named more than once {repeated}")
        return self


class TrainingDataConf(_Conf):
    """Your own data: a Delta table (name or path) with an id, a text and a 0/1 label column."""

    table: str = Field(default="risk.training_documents", description="Delta name or path")
    id_col: str = "obligor_id"
    text_col: str | None = Field(default="text", description="null: serialise text_from")
    text_from: tuple[str, ...] = Field(
        default=(), description="columns written as 'field: value; ...' when text_col is null"
    )
    label_col: str = "default_12m"
    segment_col: str | None = Field(default="segment", description="AUC per segment; null: none")
    split: Literal["stratified", "time"] = Field(
        default="stratified", description="time: train on the oldest dates, test on the newest"
    )
    date_col: str | None = Field(default=None, description="the date column of a time split")
    gap_months: int = Field(
        default=12, ge=0, description="time split: months between splits (the outcome horizon)"
    )
    reference_pd_col: str | None = Field(
        default=None,
        description="a PD column reported beside the model's on the same splits (an incumbent "
        "scorecard; the demo: its generator's own PD)",
    )
    features: FeaturesConf = FeaturesConf()

    @model_validator(mode="after")
    def _check_split(self) -> TrainingDataConf:
        if self.split == "time" and not self.date_col:
            raise ValueError("split: time needs date_col")
        reserved = {c for c in (self.id_col, self.text_col, self.label_col, self.date_col) if c}
        clash = sorted(reserved & set(self.features.columns))
        if clash:
            raise ValueError(f"features: {clash} are the id, text, label or date column")
        if not self.text_col and not self.text_from:
            raise ValueError("text_col is null: name the columns to serialise in text_from")
        return self


class ChunkingConf(_Conf):
    """Long documents: overlapping windows of max_length tokens, one score per document."""

    stride: int = Field(default=128, gt=0, description="tokens between window starts")
    aggregation: Literal["max", "mean"] = "max"


class RobustnessConf(_Conf):
    """The robustness report run after evaluation (riskudf/governance/robustness.py)."""

    enabled: bool = True
    max_documents: int = Field(default=150, gt=0, description="test documents drawn (seeded)")
    min_cases: int = Field(default=10, gt=0, description="fewer applicable: not assessed")
    seed: int = Field(default=0, ge=0)
    pd_tolerance: float = Field(
        default=0.1, gt=0, description="a same-PD case fails beyond this share of its PD"
    )
    pd_tolerance_floor: float = Field(default=0.001, ge=0, description="... and this much")
    invariance_max_fail_rate: float = Field(default=0.05, ge=0, le=1)
    invariance_max_grade_flip_rate: float = Field(default=0.01, ge=0, le=1)
    personal_data_max_fail_rate: float = Field(default=0.01, ge=0, le=1)
    personal_data_max_grade_flip_rate: float = Field(default=0.0, ge=0, le=1)
    direction_min_pass_rate: float = Field(default=0.95, ge=0, le=1)
    direction_min_logit_change: float = Field(
        default=0.05, gt=0, description="a direction case passes when the log-odds move this much"
    )
    red_kinds: tuple[Literal["invariance", "direction", "personal_data"], ...] = Field(
        default=("direction", "personal_data"),
        description="a failed test of these kinds is red at the promotion gate, others yellow",
    )


class TrainingConf(_Conf):
    backbone: str | None = Field(default=None, description="null: the packaged MiniLM backbone")
    method: Literal["full", "lora", "frozen", "probe"] = Field(
        default="full",
        description="what gets trained; frozen: the head only, on the encoder; probe: a logistic "
        "regression on the pretrained encoder's pooled embedding",
    )
    target: Literal["default", "grade"] = Field(
        default="default", description="default: 0/1 label, a PD model; grade: grade_classes"
    )
    grade_classes: tuple[str, ...] = Field(
        default=(), description="target grade: the label column's classes, best to worst"
    )
    lora: LoraConf = LoraConf()
    data: TrainingDataConf = TrainingDataConf()
    max_length: int = Field(default=256, gt=8)
    chunking: ChunkingConf | None = Field(
        default=None, description="null: score the head of a document and flag it truncated"
    )
    epochs: int = Field(default=1, gt=0, description="at most; early stopping may end sooner")
    batch_size: int = Field(default=16, gt=0)
    learning_rate: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0, description="gradient clipping")
    mixed_precision: bool = Field(default=True, description="bf16/fp16 on a GPU; fp32 on CPU")
    early_stopping_patience: int = Field(
        default=2, gt=0, description="epochs without a better validation AUC before stopping"
    )
    imbalance: Literal["none", "class_weight", "balanced_sampling"] = Field(
        default="class_weight", description="how rare defaults are weighed"
    )
    calibration: Literal["none", "temperature", "platt", "isotonic"] = Field(
        default="platt",
        description="fitted on the calibration split (a probe: out of fold), applied at scoring",
    )
    validation_fraction: float = Field(default=0.2, gt=0, lt=1, description="early stopping")
    calibration_fraction: float = Field(
        default=0.15, ge=0, lt=1, description="fits the calibration; 0 only with calibration none"
    )
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    candidates: tuple[CandidateConf, ...] = Field(
        default=(), description="trained in turn; the best validation AUC wins (empty: one)"
    )
    publish_if_benchmark_wins: bool = Field(
        default=False,
        description="publish the transformer even when TF-IDF + LR beats it on validation",
    )
    max_train_rows: int = Field(default=0, ge=0, description="0: all rows")
    robustness: RobustnessConf = RobustnessConf()
    quantize: bool = Field(
        default=False,
        description="also publish an int8 version (static quantisation), evaluated on its own",
    )
    processes: int = Field(
        default=0, ge=0, description="0: train in the driver; n: TorchDistributor, n processes"
    )
    seed: int = 42

    def candidate_confs(self) -> list[tuple[str, TrainingConf]]:
        """Each candidate's full conf, by name; without candidates, this conf as "conf"."""
        if not self.candidates:
            return [("conf", self)]
        return [(c.name, self._candidate(c)) for c in self.candidates]

    def _candidate(self, candidate: CandidateConf) -> TrainingConf:
        update = candidate.model_dump(exclude={"name", "pooling"}, exclude_none=True)
        if candidate.pooling is not None:
            features = self.data.features.model_copy(update={"pooling": candidate.pooling})
            update["data"] = self.data.model_copy(update={"features": features})
        return self.model_copy(update={**update, "candidates": ()})

    def only_candidates(self, names: Sequence[str]) -> TrainingConf:
        """This conf with the named candidates only, in conf order (a command-line choice)."""
        known = [c.name for c in self.candidates]
        unknown = sorted(set(names) - set(known))
        if unknown or not names:
            raise ConfigError(
                f"training.candidates: no candidate named {', '.join(unknown) or '(none)'}; "
                f"the conf has {', '.join(known) or 'none'}"
            )
        chosen = tuple(c for c in self.candidates if c.name in set(names))
        return self.model_copy(update={"candidates": chosen})

    def with_data(self, **overrides: str | None) -> TrainingConf:
        """This conf with ``data`` fields replaced (command-line overrides; None keeps)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        try:
            data = TrainingDataConf.model_validate({**self.data.model_dump(), **given})
        except ValidationError as exc:
            raise ConfigError(f"training.data overrides {sorted(given)}: {exc}") from None
        return self.model_copy(update={"data": data})

    @model_validator(mode="after")
    def _check_fractions(self) -> TrainingConf:
        calibration = self.calibration_fraction if self.target == "default" else 0.0
        if self.validation_fraction + calibration + self.test_fraction >= 1:
            raise ValueError(
                "validation_fraction + calibration_fraction + test_fraction must be below 1"
            )
        if (
            self.calibration != "none"
            and self.target == "default"
            and not self.calibration_fraction
        ):
            raise ValueError(
                f"calibration {self.calibration} needs a calibration split: set "
                "calibration_fraction (the validation split chose the epoch)"
            )
        names = [c.name for c in self.candidates]
        if len(set(names)) < len(names):
            raise ValueError(f"candidates: names must differ, got {names}")
        if self.target == "grade" and len(set(self.grade_classes)) < 3:
            raise ValueError("target: grade needs at least 3 distinct grade_classes")
        if self.target == "grade" and self.chunking is not None:
            raise ValueError("chunking is for PD models (target: default)")
        probes = [c.name for c in self.candidates if c.method == "probe"]
        if self.method == "probe" and not self.candidates:
            probes.append("training.method")
        for name, conf in self.candidate_confs():
            pooling = conf.data.features.pooling
            if pooling in SEGMENT_BREAKS and conf.method != "probe":
                where = f"candidate {name}" if self.candidates else "training"
                raise ValueError(
                    f"{where}: pooling {pooling} is for method probe (a linear head on the "
                    f"mean of segment embeddings), not {conf.method}"
                )
        if probes and self.chunking is not None:
            raise ValueError(
                f"method probe ({', '.join(probes)}) reads each document's head: no chunking"
            )
        if self.chunking is not None and self.chunking.stride > self.max_length - 2:
            raise ValueError(
                f"chunking.stride must be at most max_length - 2 = {self.max_length - 2}"
            )
        return self


class LdapConf(_Conf):
    """HiveServer2's LDAP provider: a user binds as uid=<user>,<base_dn> or <user>@<domain>."""

    url: str = Field(pattern=r"^ldaps?://", description="e.g. ldaps://ldap.bank.example:636")
    base_dn: str | None = Field(default=None, description="e.g. ou=people,dc=bank,dc=example")
    domain: str | None = Field(
        default=None, description="Active Directory domain, e.g. bank.example"
    )


class BiConf(_Conf):
    """The BI endpoint (Spark Thrift Server) and what the analyst views compute."""

    host: str = Field(default="127.0.0.1", description="address the Thrift server binds to")
    port: int = Field(default=10000, gt=0, lt=65536, description="HiveServer2 (JDBC) port")
    lgd: float = Field(
        default=0.45, ge=0.0, le=1.0, description="loss given default for expected loss"
    )
    lgd_by_segment: dict[str, float] = Field(
        default_factory=dict, description="per-segment LGD; segments not listed use lgd"
    )
    zorder_after_write: bool = Field(
        default=True, description="compact and Z-order the scored date by obligor_id"
    )
    ready_timeout_s: int = Field(default=300, gt=0, description="wait this long for the port")
    auth: Literal["password", "ldap"] = Field(
        default="password", description="how the Thrift server checks users (docs/bi.md)"
    )
    password_file: str = Field(
        default="lakehouse/bi_users", description="auth password: users and PBKDF2 hashes"
    )
    ldap: LdapConf | None = Field(default=None, description="auth ldap: the bank's directory")

    @model_validator(mode="after")
    def _check_lgd(self) -> BiConf:
        bad = {seg: v for seg, v in self.lgd_by_segment.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"lgd_by_segment values must lie in [0, 1], got {bad}")
        if self.auth == "ldap" and self.ldap is None:
            raise ValueError("bi.auth ldap needs bi.ldap (url, and base_dn or domain)")
        return self


class Threshold(_Conf):
    """Warn and alert levels of one rule; null disables that level.

    Whether a value beyond a level is "higher" or "lower" is fixed per rule (see
    ``riskudf.monitoring.alerts``): PSI, AUC drop and shares breach above, p-values and the
    disparate impact ratio breach below.
    """

    warn: float | None = None
    alert: float | None = None


class AlertRulesConf(_Conf):
    psi: Threshold = Threshold(warn=0.10, alert=0.25)
    auc_drop: Threshold = Threshold(alert=0.05)
    estimated_auc_drop: Threshold = Threshold(warn=0.03, alert=0.05)
    jeffreys_pvalue: Threshold = Threshold(warn=0.05, alert=0.01)
    hosmer_lemeshow_pvalue: Threshold = Threshold(warn=0.05)
    disparate_impact: Threshold = Threshold(warn=0.80)
    equal_opportunity_difference: Threshold = Threshold(warn=0.10)
    empty_document_share: Threshold = Threshold(warn=0.02, alert=0.10)
    quarantined_share: Threshold = Threshold(warn=0.01, alert=0.05)
    min_slice_rows: int = Field(
        default=100, ge=0, description="slice rules apply to slices with at least this many rows"
    )


class FairnessAttribute(_Conf):
    column: str = Field(description="a portfolio column, e.g. age_band")
    reference: str = Field(description="the reference group, e.g. 36-50")


class GateConf(_Conf):
    """The promotion gate's traffic light: p-values below ``pvalue_yellow_below`` are yellow,
    below ``pvalue_red_below`` red (Jeffreys, binomial, AUC change, Herfindahl); migration
    bandwidths above the ``bandwidth_*`` limits likewise. One red refuses a promotion."""

    pvalue_yellow_below: float = Field(default=0.05, gt=0, lt=1)
    pvalue_red_below: float = Field(default=0.01, gt=0, lt=1)
    # A bandwidth is the migrants' mean distance as a share of the farthest they could go: on
    # 8 grades, one-notch moves give about 0.2.
    bandwidth_yellow_above: float = Field(default=0.3, gt=0, le=1)
    bandwidth_red_above: float = Field(default=0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> GateConf:
        if self.pvalue_red_below > self.pvalue_yellow_below:
            raise ValueError("pvalue_red_below must not exceed pvalue_yellow_below")
        if self.bandwidth_red_above < self.bandwidth_yellow_above:
            raise ValueError("bandwidth_red_above must not be below bandwidth_yellow_above")
        return self


class MonitoringConf(_Conf):
    enabled: bool = True
    slice_columns: tuple[str, ...] = Field(
        default=("segment",), description="portfolio columns to slice by, joined on obligor_id"
    )
    fairness: tuple[FairnessAttribute, ...] = ()
    outcome_horizon_months: int = Field(default=12, gt=0)
    backtest_cohorts: int = Field(default=12, gt=0, description="most recent matured cohorts")
    migration_notches: int = Field(default=2, gt=0, description="share moving more than N")
    trend_runs: int = Field(default=30, gt=0, description="runs shown in the report's trends")
    estimate_level: float = Field(
        default=0.9, gt=0, lt=1, description="coverage of the PD-only estimates' bands"
    )
    estimate_simulations: int = Field(
        default=1000, ge=100, description="simulated outcomes behind those bands"
    )
    report_dir: str = "lakehouse/reports"
    fail_on_alert: bool = False
    alerts: AlertRulesConf = AlertRulesConf()

    @model_validator(mode="after")
    def _check_columns(self) -> MonitoringConf:
        if len(set(self.slice_columns)) != len(self.slice_columns):
            raise ValueError(f"slice_columns must be unique, got {list(self.slice_columns)}")
        attributes = [attribute.column for attribute in self.fairness]
        if len(set(attributes)) != len(attributes):
            raise ValueError(f"fairness columns must be unique, got {attributes}")
        return self


class SparkConf(_Conf):
    app_name: str = "riskudf"
    settings: dict[str, str] = Field(default_factory=dict)
    event_log_dir: str | None = Field(
        default=None,
        description="Spark event logs of every job (a folder or a URI); null: none",
    )

    def session_settings(self) -> dict[str, str]:
        """The settings a session is built with: ``settings`` and the event log's."""
        if self.event_log_dir is None:
            return dict(self.settings)
        return {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": self.event_log_dir,
            **self.settings,
        }


class SubmitConf(_Conf):
    """How spark-submit launches the jobs on a cluster (``make submit-check`` renders it).

    Local runs leave it empty: conf/spark/spark-defaults.conf holds the local settings.
    """

    spark_submit: str = Field(default="spark-submit", description="the spark-submit to run")
    master: str | None = Field(default=None, description="yarn, k8s://https://host:443, ...")
    deploy_mode: Literal["client", "cluster"] | None = None
    archives: tuple[str, ...] = Field(
        default=(), description="e.g. the packed venv: riskudf-venv.tar.gz#environment"
    )
    files: tuple[str, ...] = Field(default=(), description="e.g. the GPU discovery script")
    jars: tuple[str, ...] = Field(default=(), description="Delta jars, unless the image has them")
    python: str | None = Field(
        default=None, description="Python of driver and executors, e.g. ./environment/bin/python"
    )
    settings: dict[str, str] = Field(default_factory=dict, description="--conf key=value")


class RiskConf(_Conf):
    tables: TablesConf = TablesConf()
    scoring: ScoringConf
    grading: GradingConf
    reasons: ReasonsConf = ReasonsConf()
    redaction: RedactionConf = RedactionConf()
    training: TrainingConf = TrainingConf()
    monitoring: MonitoringConf = MonitoringConf()
    gate: GateConf = GateConf()
    spark: SparkConf = SparkConf()
    bi: BiConf = BiConf()
    submit: SubmitConf = SubmitConf()


BASE_KEY = "base"


def merge_config(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` over ``base``: mappings merge recursively; lists and scalars replace."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def config_chain(path: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """The file and its bases, the file first, each with its own mapping (``base`` removed).

    Paths are joined as written (relative stays relative); a base named twice is a cycle.
    """
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: set[Path] = set()
    current: Path | None = Path(path)
    while current is not None:
        resolved = current.resolve()
        if resolved in seen:
            names = " -> ".join(str(p) for p, _ in chain)
            raise ConfigError(f"{chain[-1][0]}: base cycle {names} -> {current}")
        seen.add(resolved)
        raw = _read_mapping(current)
        base = raw.pop(BASE_KEY, None)
        chain.append((current, raw))
        if base is not None and (not isinstance(base, str) or not base.strip()):
            raise ConfigError(f"{current}: {BASE_KEY} must be a file name, e.g. base.yaml")
        current = current.parent / base if base is not None else None
    return chain


def _key_source(chain: list[tuple[Path, dict[str, Any]]], loc: tuple[Any, ...]) -> Path | None:
    """The first file of the chain that sets the key at ``loc``."""
    for path, raw in chain:
        node: Any = raw
        for part in loc:
            found = (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and part < len(node)
            )
            if not found:
                break
            node = node[part]
        else:
            return path
    return None


def _older_names(raw: dict[str, Any]) -> dict[str, Any]:
    """A layer's ``scoring.model_dir`` (the older name) as ``scoring.model``, so that an overlay
    written with it replaces its base's model."""
    scoring = raw.get("scoring")
    if isinstance(scoring, dict) and "model_dir" in scoring and "model" not in scoring:
        renamed = {("model" if k == "model_dir" else k): v for k, v in scoring.items()}
        return {**raw, "scoring": renamed}
    return raw


def load_config(path: str | Path) -> RiskConf:
    """Load and validate a YAML config file, merged over its ``base`` chain if it names one."""
    chain = config_chain(path)
    if len(chain) == 1:
        return parse_config(chain[0][1], source=str(chain[0][0]))
    merged: dict[str, Any] = {}
    for _, raw in reversed(chain):
        merged = merge_config(merged, _older_names(raw))
    try:
        return RiskConf.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _key_source(chain, err["loc"])
            note = f" (set in {where})" if where is not None and where != chain[0][0] else ""
            problems.append(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}{note}")
        bases = ", ".join(str(p) for p, _ in chain[1:])
        raise ConfigError(f"{chain[0][0]} (base {bases}): {'; '.join(problems)}") from None


def parse_config(raw: Any, *, source: str = "<config>") -> RiskConf:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return RiskConf.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
