"""monitoring.shadow on small inline tables: flips per segment, and on the latest matured cohort
that a challenger scored in shadow, both AUCs and DeLong's test, against references."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from riskudf.config import load_config
from riskudf.governance import statistics as g
from riskudf.lakehouse.delta import schema
from riskudf.lakehouse.schemas import SHADOW_SCORES_COLUMNS
from riskudf.monitoring.shadow import compare_shadow

ROOT = Path(__file__).resolve().parents[1]
DB = "shadow_unit"
COHORT, TODAY = dt.date(2025, 10, 31), dt.date(2026, 11, 28)
UNLABELLED = dt.date(2025, 11, 28)  # matured, scored in shadow, but no outcomes loaded yet
TOL = 1e-9


def grade_of(pd: float) -> str:
    return "A" if pd < 0.02 else "B" if pd < 0.08 else "C"


def decision_of(pd: float) -> str:
    return "approve" if pd < 0.03 else "review" if pd < 0.15 else "decline"


@pytest.fixture(scope="module")
def compared(spark, tmp_path_factory):
    rng = np.random.default_rng(5)
    n = 300
    risk = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(2.6 - 1.3 * risk))).astype(int)
    champion = 1 / (1 + np.exp(3.0 - 0.9 * (risk + rng.normal(scale=1.0, size=n))))
    challenger = 1 / (1 + np.exp(3.0 - 0.9 * (risk + rng.normal(scale=0.5, size=n))))
    ids = [f"O{i:03d}" for i in range(n)]
    segments = ["sme" if i % 3 else "corporate" for i in range(n)]

    def scored(day: dt.date, run: str, pds: np.ndarray, version: str = "v1") -> list[tuple]:
        return [
            (o, day, float(p), grade_of(p), decision_of(p), version, run)
            for o, p in zip(ids, pds, strict=True)
        ]

    def shadow(day: dt.date, run: str, pds: np.ndarray, version: str, alias: str) -> list[tuple]:
        return [
            (o, day, "demo", alias, version, float(p), grade_of(p), decision_of(p), s, run)
            for o, p, s in zip(ids, pds, segments, strict=True)
        ]

    today_champion, today_challenger = champion * 1.1, challenger * 0.9
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")
    spark.sql(f"CREATE DATABASE {DB}")
    columns = (
        "obligor_id string, as_of_date date, pd double, grade string, decision string, "
        "model_version string, run_id string"
    )
    # The cohort was scored again later (r1b) by another champion: its rows replaced r1's in
    # scored_portfolio; the comparison must pair the challenger with r1's champion rows.
    rescored = scored(COHORT, "r1b", challenger, "v2")
    today = scored(TODAY, "r2", today_champion)
    spark.createDataFrame(rescored + today, columns).write.format("delta").saveAsTable(
        f"{DB}.scored_portfolio"
    )
    spark.createDataFrame(scored(COHORT, "r1", champion) + rescored + today, columns).write.format(
        "delta"
    ).saveAsTable(f"{DB}.scored_history")
    spark.createDataFrame(
        shadow(COHORT, "r1", challenger, "v2", "challenger")
        + shadow(UNLABELLED, "r1x", challenger, "v2", "challenger")
        + shadow(TODAY, "r2", today_challenger, "v2", "challenger")
        + shadow(TODAY, "r2", today_champion, "v3", "other"),  # no matured cohort of its own
        schema(SHADOW_SCORES_COLUMNS),
    ).write.format("delta").saveAsTable(f"{DB}.shadow_scores")
    spark.createDataFrame(
        [(o, COHORT, int(d)) for o, d in zip(ids, y, strict=True)]
        + [("O999", COHORT, 1)],  # an outcome without scores joins nothing
        "obligor_id string, observation_date date, default_12m int",
    ).write.format("delta").saveAsTable(f"{DB}.outcomes")
    data = load_config(ROOT / "conf/local.yaml").model_dump(mode="json")
    data["tables"]["database"] = DB
    path = tmp_path_factory.mktemp("shadow") / "conf.yaml"
    path.write_text(yaml.safe_dump(data))
    rows = compare_shadow(spark, load_config(path), run_id="r2", as_of=TODAY)
    yield rows, y, champion, challenger, today_champion, today_challenger, segments
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")


def test_flips_per_segment_count_what_differs(compared) -> None:
    rows, _, _, _, today_champion, today_challenger, segments = compared
    by_key = {(r["alias"], r["segment"]): r for r in rows}
    assert set(by_key) == {
        (alias, segment)
        for alias in ("challenger", "other")
        for segment in ("all", "corporate", "sme")
    }
    grades = np.array([grade_of(p) for p in today_champion])
    shadow_grades = np.array([grade_of(p) for p in today_challenger])
    in_sme = np.array(segments) == "sme"
    assert by_key[("challenger", "all")]["grade_flips"] == int((grades != shadow_grades).sum())
    assert by_key[("challenger", "sme")]["grade_flips"] == int(
        (grades != shadow_grades)[in_sme].sum()
    )
    assert by_key[("other", "all")]["grade_flips"] == 0  # the champion's own PDs
    assert by_key[("other", "all")]["psi"] == pytest.approx(0.0, abs=TOL)


def test_the_matured_cohort_gives_both_aucs_and_delongs_test(compared) -> None:
    rows, y, champion, challenger, *_ = compared
    [whole] = [r for r in rows if r["alias"] == "challenger" and r["segment"] == "all"]
    # The reference: AUCs of the PDs on the monitoring's bins of 1e-4, and the paired test
    # from placement values computed per obligor in numpy.
    a, b = (np.floor(p / 1e-4).astype(int) for p in (champion, challenger))
    assert whole["matured_as_of"] == COHORT  # the latest matured one with outcomes
    assert whole["matured_champion_version"] == "v1"  # the champion of the shadow's run
    assert (whole["matured_obligors"], whole["matured_defaults"]) == (len(y), int(y.sum()))
    assert whole["champion_auc"] == pytest.approx(roc_auc_score(y, a), abs=TOL)
    assert whole["challenger_auc"] == pytest.approx(roc_auc_score(y, b), abs=TOL)
    size = int(max(a.max(), b.max())) + 1
    placed = [
        g.placement_values(
            np.bincount(s[y == 1], minlength=size), np.bincount(s[y == 0], minlength=size)
        )
        for s in (a, b)
    ]

    def sums(mask: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> g.PlacementSums:
        pa, pb = pa[mask], pb[mask]
        return g.PlacementSums(
            int(mask.sum()), pa.sum(), pb.sum(), (pa * pa).sum(), (pb * pb).sum(), (pa * pb).sum()
        )

    pos, neg = y == 1, y == 0
    reference = g.paired_auc_test(
        sums(pos, placed[0][0][a], placed[1][0][b]), sums(neg, placed[0][1][a], placed[1][1][b])
    )
    assert reference is not None
    assert whole["auc_difference"] == pytest.approx(reference.difference, abs=TOL)
    assert whole["auc_difference_pvalue"] == pytest.approx(reference.pvalue, abs=TOL)
    assert whole["auc_difference"] > 0  # the fixture's challenger reads the risk better


def test_no_matured_cohort_leaves_the_auc_columns_empty(compared) -> None:
    rows = compared[0]
    other = [r for r in rows if r["alias"] == "other"]
    segments = [r for r in rows if r["segment"] != "all"]
    for row in other + segments:
        assert row["matured_as_of"] is None and row["auc_difference_pvalue"] is None
