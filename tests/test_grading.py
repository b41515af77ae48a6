from __future__ import annotations

from riskudf.config import GradeBand, GradingConf
from riskudf.scoring.grading import add_grade_and_decision

CONF = GradingConf(
    master_scale=(
        GradeBand(grade="A", upper_pd=0.01),
        GradeBand(grade="B", upper_pd=0.05),
        GradeBand(grade="C", upper_pd=1.0),
    ),
    review_from_pd=0.02,
    decline_from_pd=0.05,
)


def test_grade_and_decision_at_band_edges(spark) -> None:
    pds = [0.0, 0.0099999, 0.01, 0.0199999, 0.02, 0.0499999, 0.05, 0.999, 1.0, None, -0.1, 1.5]
    df = spark.createDataFrame([(i, pd) for i, pd in enumerate(pds)], "i int, pd double")
    rows = add_grade_and_decision(df, CONF).orderBy("i").collect()
    assert [(row["grade"], row["decision"]) for row in rows] == [
        ("A", "approve"),
        ("A", "approve"),
        ("B", "approve"),
        ("B", "approve"),
        ("B", "review"),
        ("B", "review"),
        ("C", "decline"),
        ("C", "decline"),
        ("C", "decline"),
        (None, None),
        (None, None),
        (None, None),
    ]
