"""The scoring pandas UDF and mapInPandas mapper: factories whose closures hold only glue."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any

import pandas as pd
from pyspark import Accumulator, Broadcast
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from riskudf.failpoints import act
from riskudf.scoring.scorer import Batch, ScoringOptions
from riskudf.scoring.worker import TaskRecord, get_scorer, set_task_threads, worker_load_count

REASONS_TYPE = ArrayType(
    StructType(
        [
            StructField("code", StringType()),
            StructField("description", StringType()),
            StructField("weight", DoubleType()),
        ]
    )
)
SCORE_TYPE = StructType(
    [
        StructField("pd", DoubleType()),
        StructField("n_tokens", IntegerType()),
        StructField("truncated", BooleanType()),
        StructField("n_chunks", IntegerType()),
        StructField("reasons", REASONS_TYPE),
    ]
)


def _score_stream(
    batches: Iterator[Batch],
    artifact: Broadcast[dict[str, bytes]],
    key: str,
    options: ScoringOptions,
    stats: Accumulator[dict[str, dict[str, Any]]] | None = None,
) -> Iterator[pd.DataFrame]:
    """The body shared by the UDF and the mapInPandas mapper: threads, model, failpoint, and
    the task's record in ``stats``. The model is loaded at the first batch: a task with no rows
    (an empty partition, an incremental run with nothing changed) loads nothing."""
    set_task_threads()
    point = options.failpoint if options.failpoint and options.failpoint.site == "udf" else None
    task = TaskRecord()

    def counted() -> Iterator[Batch]:
        for batch in batches:
            if point is not None and task.rows >= point.arg:
                act(point)
            task.count(batch[0])
            yield batch

    stream = counted()
    first = next(stream, None)
    if first is not None:
        loads = worker_load_count(key)
        scorer = get_scorer(key, artifact, options)
        yield from scorer.score_all(chain([first], stream))
        if stats is not None:
            loaded = worker_load_count(key) - loads
            stats.add(task.stats(loads=loaded, device=scorer.device, precision=scorer.precision))
    if point is not None and task.rows >= point.arg:
        act(point)


def _texts(documents: pd.Series) -> list[str]:
    return documents.fillna("").astype(str).tolist()


def make_pd_udf(
    artifact: Broadcast[dict[str, bytes]],
    *,
    key: str,
    options: ScoringOptions,
    with_features: bool = False,
    stats: Accumulator[dict[str, dict[str, Any]]] | None = None,
) -> Any:
    """A pandas UDF mapping a document column to struct<pd, n_tokens, truncated, n_chunks,
    reasons> (SCORE_TYPE; reasons only for flagged decisions when ``options.explain`` is set).

    ``artifact`` is a Broadcast of the model directory's files (see load_artifact_bytes) and
    ``key`` identifies the model (artifact_key: the manifest's sha256) in the worker cache.
    ``with_features``: for a fused model, the UDF takes a second argument, a struct of the
    manifest's feature columns (by name). ``stats`` (a WorkerStats accumulator) gets one record
    per task that scored.
    """
    if with_features:

        @pandas_udf(SCORE_TYPE)  # type: ignore[call-overload]
        def score_with_features(
            batches: Iterator[tuple[pd.Series, pd.DataFrame]],
        ) -> Iterator[pd.DataFrame]:
            pairs = ((_texts(docs), frame) for docs, frame in batches)
            yield from _score_stream(pairs, artifact, key, options, stats)

        return score_with_features

    @pandas_udf(SCORE_TYPE)  # type: ignore[call-overload]
    def score_documents(documents: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        texts: Iterator[Batch] = ((_texts(batch), None) for batch in documents)
        yield from _score_stream(texts, artifact, key, options, stats)

    return score_documents


def make_pd_mapper(
    artifact: Broadcast[dict[str, bytes]],
    *,
    key: str,
    options: ScoringOptions,
    keep: list[str],
    features: tuple[str, ...] = (),
    stats: Accumulator[dict[str, dict[str, Any]]] | None = None,
) -> Any:
    """The same scoring as make_pd_udf for ``mapInPandas`` (which takes a ResourceProfile):
    frames with ``document``, the ``keep`` and the ``features`` columns in (a fused model reads
    the latter), ``keep`` + SCORE_TYPE's fields out."""

    def score_frames(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        kept: list[pd.DataFrame] = []

        def texts() -> Iterator[Batch]:
            for frame in frames:
                kept.append(frame[keep].reset_index(drop=True))
                columns = frame[list(features)].reset_index(drop=True) if features else None
                yield _texts(frame["document"]), columns

        for scores in _score_stream(texts(), artifact, key, options, stats):
            yield pd.concat([kept.pop(0), scores], axis=1)

    return score_frames
