"""int8 versions: stored as plain safetensors, verified and rebuilt, scored like any version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import PD_ATOL, publish_tiny

from riskudf.model.artifact import ArtifactError, load_artifact_bytes, sha256_file
from riskudf.model.load import load_artifact, load_tokenizer
from riskudf.model.quantized import METHOD, QUANTIZED_FILE, quantize
from riskudf.scoring.device import check_int8_device, is_quantized
from riskudf.scoring.scorer import ScoringOptions
from riskudf.scoring.udf import make_pd_udf
from riskudf.training.finetune import score_texts

TEXTS = [
    "PAYMENT HISTORY\nNo late payments in the last 24 months.",
    "PAYMENT HISTORY\nTwo accounts are 90 days past due. Revolving utilisation is 97%.",
    "GOING CONCERN. These conditions raise substantial doubt about the Company's ability to "
    "continue as a going concern. " * 3,
    "Utilisation 15%.",
]


@pytest.fixture(scope="module")
def int8_version(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny model quantised in process, the int8 version published from it, and the fp32
    model's PDs."""
    import torch

    from riskudf.model.load import load_sequence_classifier

    torch.manual_seed(3)
    fp32 = load_sequence_classifier(tiny_backbone, num_labels=2)
    tokenizer = load_tokenizer(tiny_backbone)
    fp32_pds = score_texts(tokenizer, fp32, TEXTS, max_length=64)["pd"].to_numpy()
    model = quantize(fp32, lambda m: score_texts(tokenizer, m, TEXTS[:2], max_length=64))
    out = tmp_path_factory.mktemp("int8") / "tiny"
    quantization = {"method": METHOD, "engine": "x86", "parent_version": "tiny-1"}
    publish_tiny(model, tiny_backbone, out, version="tiny-1-int8", quantization=quantization)
    return model, out, fp32_pds


def test_the_int8_version_round_trips_and_scores_like_the_model_in_process(
    int8_version, tiny_backbone: Path
) -> None:
    model, out, _ = int8_version
    manifest, tokenizer, loaded = load_artifact(out)
    assert manifest.quantization["parent_version"] == "tiny-1"
    assert QUANTIZED_FILE in manifest.files and "model.safetensors" not in manifest.files
    assert is_quantized(loaded)
    mine = score_texts(load_tokenizer(tiny_backbone), model, TEXTS, max_length=64)["pd"]
    theirs = score_texts(tokenizer, loaded, TEXTS, max_length=64)["pd"]
    assert np.abs(mine.to_numpy() - theirs.to_numpy()).max() <= PD_ATOL
    # the head stays fp32: a probe's folded head would lose its precision in int8
    assert not is_quantized(loaded.classifier) and is_quantized(loaded.bert)


def test_an_int8_version_is_batched_and_a_pd_does_not_depend_on_its_batch(
    int8_version, tiny_backbone
) -> None:
    """Input scales are fixed at calibration: the four documents go through one forward pass,
    and each gets the PD it gets alone (a scale taken from the batch's range would differ)."""
    model, _, _ = int8_version
    tokenizer = load_tokenizer(tiny_backbone)
    passes = []
    hook = model.register_forward_pre_hook(
        lambda _m, _args, _kw: passes.append(1), with_kwargs=True
    )
    try:
        together = score_texts(tokenizer, model, TEXTS, max_length=64)["pd"].to_numpy()
    finally:
        hook.remove()
    assert len(passes) == 1
    alone = np.array(
        [score_texts(tokenizer, model, [t], max_length=64)["pd"].iat[0] for t in TEXTS]
    )
    assert np.abs(together - alone).max() <= PD_ATOL


def test_int8_layers_round_trip_exactly(int8_version) -> None:
    from riskudf.model.quantized import Int8Linear

    model, out, fp32_pds = int8_version
    layers = {n: m for n, m in model.named_modules() if isinstance(m, Int8Linear)}
    # two layers of q, k, v, attention output, intermediate and output, and the pooler
    assert len(layers) == 2 * 6 + 1
    _, tokenizer, loaded = load_artifact(out)
    for name, layer in layers.items():
        again = loaded.get_submodule(name)
        assert (again.input_scale, again.input_zero_point) == (
            layer.input_scale,
            layer.input_zero_point,
        )
        assert 0 < layer.input_scale < 1 and 0 <= layer.input_zero_point <= 127
        (w, b), (w2, b2) = layer.weight_bias(), again.weight_bias()
        assert torch_equal(w.int_repr(), w2.int_repr()) and torch_equal(b, b2)
        assert torch_equal(w.q_per_channel_scales(), w2.q_per_channel_scales())
        assert not w2.q_per_channel_zero_points().any()  # symmetric weights
    int8_pds = score_texts(tokenizer, loaded, TEXTS, max_length=64)["pd"].to_numpy()
    assert np.abs(int8_pds - fp32_pds).max() > 0  # int8, not the fp32 weights


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_an_int8_layer_computes_the_quantised_product_and_clips_to_its_range() -> None:
    """Output = (input quantised to 7 bits with the fixed scale, clipped to its range) times
    the dequantised int8 weights, plus the bias, to float tolerance (1e-4 on outputs of ~10)."""
    import torch

    from riskudf.model.quantized import Int8Linear

    torch.manual_seed(0)
    weight, bias = torch.randn(8, 16), torch.randn(8)
    scales = weight.abs().amax(dim=1).double() / 127
    qweight = torch.quantize_per_channel(weight, scales, torch.zeros(8).long(), 0, torch.qint8)
    layer = Int8Linear(qweight, bias, input_scale=0.05, input_zero_point=20)
    x = torch.randn(3, 5, 16) * 2  # some below -1.0 and above 5.35: clipped
    expected = (
        torch.fake_quantize_per_tensor_affine(x, 0.05, 20, 0, 127) @ qweight.dequantize().T + bias
    )
    got = layer(x)
    assert got.shape == (3, 5, 8)
    assert (x < -1.0).any() and (x > 5.35).any()
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)
    assert torch.allclose(layer(x.to(torch.bfloat16)), layer(x.to(torch.bfloat16).float()))


@pytest.mark.parametrize(
    ("part", "value", "invalid"),
    [
        ("int8_scale", lambda t: -t, "int8_scale"),
        ("int8_zero_point", lambda t: t + 5, "int8_zero_point"),
        ("int8_input_scale", lambda t: t * float("nan"), "int8_input_scale"),
        ("int8_input_zero_point", lambda t: t + 300, "int8_input_zero_point"),
        ("int8_input_zero_point", lambda t: t.double(), "int8_input_zero_point"),
        ("int8_bias", lambda t: t[:-1], "int8_bias"),
    ],
)
def test_int8_parameters_quantize_never_makes_are_refused(
    int8_version, tmp_path: Path, part, value, invalid
) -> None:
    """Checksums aside (a tampered file fails them first), the loader refuses parameters that
    quantize never makes: negative or NaN scales, asymmetric weights, input zero points out of
    7 bits or not integers, a bias of the wrong width."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from riskudf.model.quantized import load_quantized

    _, out, _ = int8_version
    tensors = load_file(str(out / QUANTIZED_FILE))
    layer = "bert.encoder.layer.1.output.dense"
    tensors[f"{layer}.{part}"] = value(tensors[f"{layer}.{part}"]).contiguous()
    save_file(tensors, str(tmp_path / QUANTIZED_FILE))
    skeleton = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(out))
    with pytest.raises(ArtifactError, match=f"layer {layer} has invalid {invalid}$"):
        load_quantized(skeleton, tmp_path / QUANTIZED_FILE)


def test_quantising_needs_calibration_input(tiny_backbone: Path) -> None:
    from riskudf.model.load import load_sequence_classifier

    with pytest.raises(ValueError, match="saw no calibration input"):
        quantize(load_sequence_classifier(tiny_backbone, num_labels=2), lambda _m: None)


def test_a_tampered_int8_file_is_refused(int8_version, tmp_path: Path) -> None:
    import shutil

    _, out, _ = int8_version
    copy = tmp_path / "copy"
    shutil.copytree(out.resolve(), copy)
    data = bytearray((copy / QUANTIZED_FILE).read_bytes())
    data[-1] ^= 1
    (copy / QUANTIZED_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_artifact(copy)


def test_int8_tensors_that_do_not_fit_the_architecture_are_refused(
    int8_version, tmp_path: Path
) -> None:
    """Checksums recomputed over a file with a layer missing: the loader still refuses it."""
    import shutil

    from safetensors.torch import load_file, save_file

    _, out, _ = int8_version
    copy = tmp_path / "copy"
    shutil.copytree(out.resolve(), copy)
    tensors = load_file(str(copy / QUANTIZED_FILE))
    layer = "bert.encoder.layer.0.attention.self.query."
    dropped = {k: v for k, v in tensors.items() if not k.startswith(layer)}
    save_file(dropped, str(copy / QUANTIZED_FILE))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][QUANTIZED_FILE] = sha256_file(copy / QUANTIZED_FILE)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="quantised layers differ"):
        load_artifact(copy)


def test_int8_versions_are_refused_where_they_cannot_run() -> None:
    with pytest.raises(ValueError, match="CPU only"):
        check_int8_device("cuda:0", frozenset({"avx2"}))
    with pytest.raises(ValueError, match="AVX2"):
        check_int8_device("cpu", frozenset({"sse4_2"}))
    check_int8_device("cpu", frozenset({"avx2", "avx512_vnni"}))


def test_the_udf_scores_the_int8_version_in_int8(spark, int8_version) -> None:
    _, out, _ = int8_version
    _, files = load_artifact_bytes(out)
    artifact = spark.sparkContext.broadcast(files)
    # precision auto (bf16 on CPUs with AMX): an int8 version runs as validated
    udf = make_pd_udf(artifact, key="int8", options=ScoringOptions(max_length=64, token_budget=512))
    docs = spark.createDataFrame([(i, t) for i, t in enumerate(TEXTS)], "i int, document string")
    rows = docs.select("i", udf("document").alias("s")).select("i", "s.pd").collect()
    scored = {r["i"]: r["pd"] for r in rows}
    _, tokenizer, loaded = load_artifact(out)
    expected = score_texts(tokenizer, loaded, TEXTS, max_length=64)["pd"].to_numpy()
    assert np.abs(np.array([scored[i] for i in range(len(TEXTS))]) - expected).max() <= PD_ATOL
    artifact.unpersist()
