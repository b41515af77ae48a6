"""PD -> grade -> decision, from the master scale and thresholds in the config."""

from __future__ import annotations

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from riskudf.config import GradingConf


def _invalid(pd: Column) -> Column:
    return pd.isNull() | (pd < 0) | (pd > 1)


def grade_expr(pd: Column, conf: GradingConf) -> Column:
    """The first band whose exclusive upper bound exceeds the PD; 1.0 falls in the last."""
    expr = F.when(_invalid(pd), F.lit(None).cast("string"))
    for band in conf.master_scale[:-1]:
        expr = expr.when(pd < F.lit(band.upper_pd), F.lit(band.grade))
    return expr.otherwise(F.lit(conf.master_scale[-1].grade))


def decision_expr(pd: Column, conf: GradingConf) -> Column:
    """decline from decline_from_pd, review from review_from_pd, else approve (bounds inclusive)."""
    return (
        F.when(_invalid(pd), F.lit(None).cast("string"))
        .when(pd >= F.lit(conf.decline_from_pd), F.lit("decline"))
        .when(pd >= F.lit(conf.review_from_pd), F.lit("review"))
        .otherwise(F.lit("approve"))
    )


def add_grade_and_decision(scores: DataFrame, conf: GradingConf) -> DataFrame:
    """Add ``grade`` and ``decision`` for the ``pd`` column; a PD outside [0, 1] gets null."""
    pd = F.col("pd")
    return scores.withColumn("grade", grade_expr(pd, conf)).withColumn(
        "decision", decision_expr(pd, conf)
    )


def grades_of(pds: np.ndarray, conf: GradingConf) -> list[str]:
    """The grade of each PD in [0, 1], as ``grade_expr`` computes it (numpy, for baselines)."""
    uppers = np.array([band.upper_pd for band in conf.master_scale])
    index = np.minimum(np.searchsorted(uppers, pds, side="right"), len(uppers) - 1)
    return [conf.master_scale[i].grade for i in index.tolist()]


def decisions_of(pds: np.ndarray, conf: GradingConf) -> list[str]:
    """The decision of each PD, as ``decision_expr`` computes it."""
    return np.where(
        pds >= conf.decline_from_pd,
        "decline",
        np.where(pds >= conf.review_from_pd, "review", "approve"),
    ).tolist()
