from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PD_ATOL, reasons_close

from riskudf.config import load_config
from riskudf.model.artifact import artifact_key, load_artifact_bytes
from riskudf.model.calibration import calibrate, fit_platt
from riskudf.model.load import load_artifact, load_tokenizer
from riskudf.scoring import worker
from riskudf.scoring.device import cpu_flags, cuda_index, resolve_precision
from riskudf.scoring.scorer import (
    ExplainOptions,
    Scorer,
    ScoringOptions,
    cut_to_window,
    pad_batch,
    plan_batches,
)
from riskudf.scoring.udf import make_pd_mapper, make_pd_udf


def test_plan_batches_sorts_and_respects_the_budget() -> None:
    lengths = np.array([50, 10, 30, 10, 200, 40])
    batches = plan_batches(lengths, token_budget=100)
    assert [b.tolist() for b in batches] == [[1, 3, 2], [5, 0], [4]]
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 100


def test_plan_batches_covers_every_row_once() -> None:
    lengths = np.random.default_rng(0).integers(3, 300, size=1000)
    batches = plan_batches(lengths, token_budget=2048)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(1000))
    assert all(len(b) * lengths[b].max() <= 2048 for b in batches)


def test_plan_batches_empty() -> None:
    assert plan_batches(np.array([], dtype=np.int64), token_budget=10) == []


def test_cut_to_window_keeps_head_and_sep() -> None:
    assert cut_to_window([101, 5, 6, 7, 102], 4, 102) == [101, 5, 6, 102]
    assert cut_to_window([101, 5, 102], 4, 102) == [101, 5, 102]


def test_pad_batch_right_pads_and_masks() -> None:
    batch = pad_batch([[101, 7, 102], [101, 102]], pad_id=0)
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_window_cut_matches_the_tokenizer_truncation_used_in_training(tiny_model: Path) -> None:
    tokenizer = load_tokenizer(tiny_model)
    text = "seven accounts ninety days past due; county court judgment unpaid. " * 20
    full = tokenizer(text, truncation=False)["input_ids"]
    trained = tokenizer(text, truncation=True, max_length=32)["input_ids"]
    assert len(full) > 32
    assert cut_to_window(full, 32, tokenizer.sep_token_id) == trained


TEXTS = [
    "short",
    "",
    "payments 90 days past due and a county court judgment " * 30,
    "all accounts paid as agreed",
    "utilisation 95% " * 8,
]


def test_batched_scores_match_one_at_a_time(tiny_model: Path) -> None:
    _, tokenizer, model = load_artifact(tiny_model)
    batched = Scorer(
        tokenizer,
        model,
        positive_label=1,
        device="cpu",
        options=ScoringOptions(max_length=64, token_budget=128),
    ).score(TEXTS)
    single = pd.concat(
        [
            Scorer(
                tokenizer,
                model,
                positive_label=1,
                device="cpu",
                options=ScoringOptions(max_length=64, token_budget=1),
            ).score([t])
            for t in TEXTS
        ],
        ignore_index=True,
    )
    np.testing.assert_allclose(batched["pd"], single["pd"], atol=PD_ATOL, rtol=0)
    assert batched["truncated"].tolist() == [False, False, True, False, False]
    assert batched["n_tokens"].tolist() == single["n_tokens"].tolist()
    assert batched["n_tokens"][1] == 2  # [CLS] [SEP]
    assert ((batched["pd"] > 0) & (batched["pd"] < 1)).all()


def test_udf_loads_the_model_once_per_worker(spark, tiny_model: Path, tmp_path: Path) -> None:
    # A copy with its own model_version: a key no other test has loaded in these workers.
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(json.dumps({**manifest, "model_version": "once"}))
    _, files = load_artifact_bytes(model)
    key = artifact_key(files)
    artifact = spark.sparkContext.broadcast(files)
    udf = make_pd_udf(artifact, key=key, options=ScoringOptions(max_length=64, token_budget=512))
    docs = spark.createDataFrame(
        [(i, TEXTS[i % len(TEXTS)]) for i in range(48)], "i int, document string"
    ).repartition(12)
    scored = docs.select("i", udf("document").alias("s")).select("i", "s.pd").collect()
    assert len(scored) == 48

    # The same Python workers are reused: each reports how many models it has loaded.
    def probe(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for _ in batches:
            pass
        yield pd.DataFrame({"pid": [os.getpid()], "loads": [worker.worker_load_count(key)]})

    probes = spark.range(0, 12, numPartitions=12).mapInPandas(probe, "pid long, loads int")
    loads = {row["pid"]: row["loads"] for row in probes.collect()}
    assert len(loads) < 12, "workers were not reused across tasks"
    assert max(loads.values()) == 1, f"a worker loaded the model more than once: {loads}"
    # The same document gets the same PD whichever worker and batch scored it.
    by_text: dict[int, list[float]] = {}
    for row in scored:
        by_text.setdefault(row["i"] % len(TEXTS), []).append(row["pd"])
    assert all(max(pds) - min(pds) <= PD_ATOL for pds in by_text.values())
    artifact.unpersist()


def test_pd_udf_rejects_a_tampered_broadcast(spark, tiny_model: Path) -> None:
    _, files = load_artifact_bytes(tiny_model)
    files["config.json"] = files["config.json"] + b" "
    artifact = spark.sparkContext.broadcast(files)
    udf = make_pd_udf(
        artifact, key="tampered", options=ScoringOptions(max_length=64, token_budget=512)
    )
    docs = spark.createDataFrame([("a",)], "document string")
    with pytest.raises(Exception, match="sha256 mismatch"):
        docs.select(udf("document")).collect()
    artifact.unpersist()


def test_identity_calibration_keeps_probabilities() -> None:
    p = np.array([1e-6, 0.01, 0.3, 0.5, 0.97, 1 - 1e-6])
    np.testing.assert_allclose(calibrate(p, slope=1.0, intercept=0.0), p, rtol=1e-9)


def test_platt_fit_recovers_slope_and_intercept() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 1.5, size=40_000)
    labels = (rng.random(z.size) < 1 / (1 + np.exp(-(2.0 * z - 1.0)))).astype(int)
    fitted = fit_platt(1 / (1 + np.exp(-z)), labels)
    assert fitted["slope"] == pytest.approx(2.0, abs=0.1)
    assert fitted["intercept"] == pytest.approx(-1.0, abs=0.1)


def test_scorer_applies_the_calibration(tiny_model: Path) -> None:
    _, tokenizer, model = load_artifact(tiny_model)
    options = ScoringOptions(max_length=64, token_budget=256)
    raw = Scorer(tokenizer, model, positive_label=1, device="cpu", options=options).score(TEXTS)
    platt = {"slope": 3.0, "intercept": -2.0}
    scored = Scorer(
        tokenizer, model, positive_label=1, device="cpu", options=options, calibration=platt
    ).score(TEXTS)
    expected = calibrate(raw["pd"].to_numpy(), **platt)
    np.testing.assert_allclose(scored["pd"], expected, rtol=1e-12)
    assert not np.allclose(scored["pd"], raw["pd"])


@pytest.mark.parametrize(
    ("address", "visible", "count", "index"),
    [
        ("0", None, 1, 0),
        ("3", None, 4, 3),
        ("3", "2,3", 2, 1),  # the cluster manager shows only GPUs 2 and 3
        ("5", "5", 1, 0),
        ("5", None, 1, 0),  # isolated without CUDA_VISIBLE_DEVICES: the one visible GPU
    ],
)
def test_cuda_index_maps_spark_addresses(
    address: str, visible: str | None, count: int, index: int
) -> None:
    assert cuda_index(address, visible, count) == index


def test_scores_match_fixed_unsorted_batches(tiny_model: Path) -> None:
    """The sorted token-budget batches give the PDs of plain fixed, unsorted, padded batches."""
    import torch

    _, tokenizer, model = load_artifact(tiny_model)
    options = ScoringOptions(max_length=64, token_budget=128, precision="fp32")
    optimised = Scorer(tokenizer, model, positive_label=1, device="cpu", options=options)
    texts = TEXTS * 3
    encoded = tokenizer(
        texts, padding="longest", truncation=True, max_length=64, return_tensors="pt"
    )
    with torch.inference_mode():
        plain = torch.softmax(model(**encoded).logits, dim=-1)[:, 1].numpy()
    np.testing.assert_allclose(optimised.score(texts)["pd"], plain, atol=PD_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("requested", "device", "flags", "cuda_bf16", "resolved"),
    [
        ("auto", "cpu", {"avx512f", "avx512_vnni"}, False, "fp32"),  # Ice Lake: no native bf16
        ("auto", "cpu", {"avx512f", "avx512_bf16"}, False, "fp32"),  # no AMX: bf16 slower
        ("auto", "cpu", {"amx_bf16", "amx_tile"}, False, "bf16"),
        ("auto", "cuda:0", set(), True, "bf16"),
        ("auto", "cuda:0", set(), False, "fp16"),
        ("int8", "cpu", set(), False, "int8"),
        ("fp32", "cuda:1", set(), True, "fp32"),
    ],
)
def test_resolve_precision(
    requested: str, device: str, flags: set[str], cuda_bf16: bool, resolved: str
) -> None:
    assert (
        resolve_precision(requested, device=device, cpu_flags=frozenset(flags), cuda_bf16=cuda_bf16)
        == resolved
    )


@pytest.mark.parametrize(
    ("requested", "device"), [("int8", "cuda:0"), ("fp16", "cpu"), ("x", "cpu")]
)
def test_resolve_precision_refuses(requested: str, device: str) -> None:
    with pytest.raises(ValueError, match=r"precision|int8|fp16"):
        resolve_precision(requested, device=device, cpu_flags=frozenset())


def test_cpu_flags_reads_the_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Xeon\nflags\t\t: fpu avx512f amx_bf16\n")
    assert cpu_flags(str(info)) == {"fpu", "avx512f", "amx_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_reduced_precision_stays_close_to_fp32(tiny_model: Path) -> None:
    """The default (auto) and bf16 stay within 1e-3 of fp32; int8 runs (it is never a default)."""
    _, tokenizer, model = load_artifact(tiny_model)

    def pds(precision: str) -> np.ndarray:
        options = ScoringOptions(max_length=64, token_budget=256, precision=precision)
        scorer = Scorer(tokenizer, model, positive_label=1, device="cpu", options=options)
        return scorer.score(TEXTS)["pd"].to_numpy()

    reference = pds("fp32")
    assert np.abs(pds("auto") - reference).max() < 1e-3
    assert np.abs(pds("bf16") - reference).max() < 1e-3
    int8 = pds("int8")
    assert ((int8 > 0) & (int8 < 1)).all()


@pytest.mark.parametrize("explain", [False, True])
def test_mapper_scores_like_the_udf(spark, tiny_model: Path, explain: bool) -> None:
    """The mapInPandas form (GPU stage with a ResourceProfile) gives the UDF's rows, reason
    codes included (every row flagged: review from PD 0)."""
    _, files = load_artifact_bytes(tiny_model)
    key = artifact_key(files)
    artifact = spark.sparkContext.broadcast(files)
    conf = load_config(Path(__file__).resolve().parents[1] / "conf/local.yaml")
    grading = conf.grading.model_copy(update={"review_from_pd": 0.0})
    options = ScoringOptions(
        max_length=64,
        token_budget=512,
        explain=ExplainOptions(conf.reasons, grading) if explain else None,
    )
    docs = spark.createDataFrame(
        [(f"o{i}", i, TEXTS[i % len(TEXTS)] if i != 3 else None) for i in range(12)],
        "obligor_id string, n_filings int, document string",
    ).repartition(2)
    udf = make_pd_udf(artifact, key=key, options=options)
    by_udf = docs.select("obligor_id", "n_filings", udf("document").alias("s")).select(
        "obligor_id", "n_filings", "s.*"
    )
    mapper = make_pd_mapper(artifact, key=key, options=options, keep=["obligor_id", "n_filings"])
    by_mapper = docs.mapInPandas(mapper, by_udf.schema)
    assert by_mapper.schema == by_udf.schema
    expected = by_udf.toPandas().sort_values("obligor_id", ignore_index=True)
    got = by_mapper.toPandas().sort_values("obligor_id", ignore_index=True)
    pd.testing.assert_frame_equal(
        got.drop(columns="reasons"),
        expected.drop(columns="reasons"),
        check_exact=False,
        atol=PD_ATOL,
    )
    assert all(map(reasons_close, got["reasons"], expected["reasons"]))
    if explain:  # the judgment document has a mapped span; rows are flagged, [] or reasons
        assert got["reasons"].map(lambda r: r is not None).all()
        codes = {r["code"] for reasons in got["reasons"] for r in reasons}
        assert codes <= {"PUBLIC_RECORD"}
    else:
        assert got["reasons"].isna().all()
    artifact.unpersist()
