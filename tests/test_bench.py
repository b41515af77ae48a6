from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness import BertShape, bert_flops, ratio, result_line, tree_pss_mib


def test_bert_flops_counts_projections_feed_forward_and_attention() -> None:
    shape = BertShape(layers=2, hidden=4, intermediate=8)
    # one document of 3 tokens: per layer 2*3*(4*16 + 2*32) + 4*9*4 = 768 + 144
    assert bert_flops(np.array([3]), shape) == 2 * (768 + 144)
    assert bert_flops(np.array([3, 3]), shape) == 2 * bert_flops(np.array([3]), shape)


def test_minilm_document_of_177_tokens_is_about_4_gflop() -> None:
    minilm = BertShape(layers=6, hidden=384, intermediate=1536)
    assert bert_flops(np.array([177]), minilm) / 1e9 == pytest.approx(4.05, abs=0.01)


def test_result_line_is_the_last_line_format() -> None:
    rates = {"a": 40.0, "b": 38.0, "c": 25.0, "d": 20.0}
    assert result_line(rates) == "ratio_spark_vs_raw=0.950 ratio_vs_predict_batch_udf=1.520"
    assert np.isnan(ratio(1.0, 0.0))
    rates.update(e=45.0, f=30.0)  # the int8 version's stage against predict_batch_udf at fp32
    assert result_line(rates).endswith(" ratio_int8_vs_predict_batch_udf_fp32=1.500")


def test_tree_pss_of_this_process_is_positive() -> None:
    assert tree_pss_mib(os.getpid()) > 1


def test_pooling_check_reads_each_line_as_its_own_window() -> None:
    from benchmarks.harness import Job, pooling_check

    conf = Path(__file__).resolve().parents[1] / "conf/local.yaml"
    job = Job("", "", "", str(conf), "", 1, "local[1]", "cpu")
    texts = [
        "Payments are on time.\nUtilisation is 20%.\n\nNo arrears in 24 months.",
        "Two accounts are 90 days past due.\nUtilisation is 95%.\n\nA county court judgment.",
    ]
    lines = pooling_check(job, texts)
    assert [line.split()[0] for line in lines] == ["mean", "paragraphs", "lines"]
    assert "(1.00 x mean)" in lines[0]
    windows = [float(line.split()[-4]) for line in lines]
    assert windows == [1.0, 2.0, 3.0]
