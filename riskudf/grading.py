"""PD -> grade -> decision, from the master scale and thresholds in the config."""

from __future__ import annotations

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
