"""Scoring throughput side by side on the same documents, model and precision (``make bench``).

(a) a raw single-process torch loop with the project's length-sorted token-budget batches: the
ceiling; (b) the project's Spark scoring stage (``score_and_grade``); (c) Spark's own
``predict_batch_udf`` with a straightforward predict function (fixed batch size, padding to the
batch's longest); (d) a ``transformers`` pipeline loop.

Each path runs in its own process (``run_path``), so that its peak memory (PSS of the process
tree: driver, JVM and Python workers) is its own; the parent samples it and prints the table.
Throughput is steady state: every path loads the model and scores a few documents first, and
only the full pass over the N documents is timed.

The four paths score only (reason codes off in (b), so that the paths do the same work); the
reason codes' overhead per flagged row, and their fidelity, are measured on their own with the
scorer the UDF runs (``explain_check``), and a probe's pooling (whole window, paragraphs, lines)
on its own (``pooling_check``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PATHS = {
    "a": "raw torch loop",
    "b": "riskudf Spark stage",
    "c": "predict_batch_udf",
    "d": "transformers pipeline",
    "e": "riskudf Spark stage int8",  # the int8 version of the same model (its own artifact)
    "f": "predict_batch_udf fp32",  # (c) at fp32, whatever the conf's precision
}
WARMUP_DOCS = 64
LONG_CHARS = 200_000  # the long-document case: documents at the default max_document_chars
FIXED_BATCH = 64  # the straightforward paths' batch size (c, d)


@dataclass(frozen=True)
class BertShape:
    layers: int
    hidden: int
    intermediate: int


def bert_flops(lengths: np.ndarray, shape: BertShape) -> float:
    """Matmul FLOPs of the encoder over each document at its own length (padding not counted).

    Per layer and token: Q, K, V, output projections (4 h^2) and the feed-forward (2 h i)
    multiply-adds; per layer and pair of tokens: scores and weighted sum (2 h).
    """
    s = lengths.astype(np.float64)
    h, i = shape.hidden, shape.intermediate
    per_layer = 2 * s * (4 * h * h + 2 * h * i) + 4 * s * s * h
    return float(shape.layers * per_layer.sum())


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def result_line(rates: dict[str, float]) -> str:
    """The benchmark's last line."""
    line = (
        f"ratio_spark_vs_raw={ratio(rates['b'], rates['a']):.3f} "
        f"ratio_vs_predict_batch_udf={ratio(rates['b'], rates['c']):.3f}"
    )
    if "e" in rates:
        line += f" ratio_int8_vs_predict_batch_udf_fp32={ratio(rates['e'], rates['f']):.3f}"
    return line


# --- measuring -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    tree, todo = [pid], [pid]
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    while todo:
        for child in parents.get(todo.pop(), []):
            tree.append(child)
            todo.append(child)
    return tree


def tree_pss_mib(pid: int) -> float:
    """Proportional set size of a process and its descendants (shared pages split fairly)."""
    total = 0
    for member in _children(pid):
        try:
            with open(f"/proc/{member}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def gpu_sample() -> tuple[float, float]:
    """GPU 0's utilisation (%) and memory used (MiB) from nvidia-smi."""
    out = subprocess.run(
        [
            "nvidia-smi",
            "--id=0",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    utilisation, memory = (float(part) for part in out.strip().split(","))
    return utilisation, memory


@dataclass
class Usage:
    peak_mib: float = 0.0
    gpu_busy: list[tuple[float, float]] = field(default_factory=list)  # (time, %)
    gpu_peak_mib: float = 0.0


def run_sampled(command: list[str], env: dict[str, str], *, gpu: bool = False) -> tuple[int, Usage]:
    """Run a command to its end; its exit status and the peak PSS of its process tree (MiB),
    with GPU utilisation samples and peak GPU memory when ``gpu``."""
    process = subprocess.Popen(command, env=env)
    usage = Usage()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            usage.peak_mib = max(usage.peak_mib, tree_pss_mib(process.pid))
            if gpu:
                busy, memory = gpu_sample()
                usage.gpu_busy.append((time.time(), busy))
                usage.gpu_peak_mib = max(usage.gpu_peak_mib, memory)
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    return code, usage


def matmul_peak_gflops(precision: str, threads: int, device: str = "cpu") -> float:
    """Best achieved GFLOP/s of a square matmul at the precision used (int8: fp32 reference);
    2048^3 on a CPU, 8192^3 on a GPU."""
    import torch

    size = 2048 if device == "cpu" else 8192
    torch.set_num_threads(threads)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for _ in range(6):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


# --- the four paths (each runs in a child process) -------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a child process needs; passed as JSON."""

    path: str
    docs: str
    model_dir: str
    conf: str
    out: str
    threads: int
    master: str
    device: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _load(job: Job) -> tuple[Any, Any, Any, str]:
    """Manifest, tokenizer, model (with the precision's quantisation) and the precision."""
    import torch

    from riskudf.config import load_config
    from riskudf.model.load import load_artifact
    from riskudf.scoring.device import device_precision, quantize_int8

    torch.set_num_threads(job.threads)
    conf = load_config(job.conf)
    precision = device_precision(conf.scoring.precision, job.device)
    manifest, tokenizer, model = load_artifact(job.model_dir)
    if precision == "int8":
        model = quantize_int8(model)
    return manifest, tokenizer, model.to(job.device), precision


def _autocast(precision: str, device: str) -> Any:
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.split(":")[0], dtype, enabled=precision in ("bf16", "fp16"))


def raw_loop(job: Job, texts: list[str]) -> tuple[np.ndarray, float]:
    """(a): tokenise, plan the same token-budget batches, forward; PDs and seconds."""
    import torch

    from riskudf.config import load_config
    from riskudf.scoring.scorer import cut_to_window, pad_batch, plan_batches

    manifest, tokenizer, model, precision = _load(job)
    budget = load_config(job.conf).scoring.token_budget
    gpu = job.device.startswith("cuda")

    def score(batch_texts: list[str]) -> np.ndarray:
        encoded = tokenizer(batch_texts, truncation=False, verbose=False)["input_ids"]
        windows = [
            cut_to_window(ids, manifest.max_length, tokenizer.sep_token_id) for ids in encoded
        ]
        lengths = np.array([len(ids) for ids in windows])
        pds = np.empty(len(windows))
        with torch.inference_mode(), _autocast(precision, job.device):
            for rows in plan_batches(lengths, budget):
                batch = pad_batch([windows[i] for i in rows], tokenizer.pad_token_id, pin=gpu)
                batch = {k: v.to(job.device, non_blocking=True) for k, v in batch.items()}
                logits = model(**batch).logits.float()
                pds[rows] = torch.softmax(logits, -1)[:, manifest.positive_label].cpu().numpy()
        return pds

    score(texts[:WARMUP_DOCS])
    start = time.perf_counter()
    pds = score(texts)
    return pds, time.perf_counter() - start


def pipeline_loop(job: Job, texts: list[str]) -> tuple[np.ndarray, float]:
    """(d): a transformers text-classification pipeline, fixed batches, truncation to the window."""
    from transformers import pipeline

    manifest, tokenizer, model, precision = _load(job)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=job.device)
    label = model.config.id2label[manifest.positive_label]

    def score(batch_texts: list[str]) -> np.ndarray:
        with _autocast(precision, job.device):
            out = pipe(
                batch_texts,
                batch_size=FIXED_BATCH,
                truncation=True,
                max_length=manifest.max_length,
                top_k=None,
                function_to_apply="softmax",
            )
        rows: list[list[dict[str, Any]]] = out  # type: ignore[assignment]
        return np.array([next(s["score"] for s in row if s["label"] == label) for row in rows])

    score(texts[:WARMUP_DOCS])
    start = time.perf_counter()
    pds = score(texts)
    return pds, time.perf_counter() - start


def bench_spark(job: Job) -> Any:
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(job.master)
        .appName(f"riskudf-bench-{job.path}")
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


def spark_stage(job: Job) -> tuple[pd.DataFrame, float]:
    """(b): the project's scoring stage (score_and_grade) with the conf's batching and precision."""
    from pyspark.sql import functions as F

    from riskudf.config import load_config
    from riskudf.model.artifact import artifact_key, load_artifact_bytes
    from riskudf.scoring.incremental import fingerprint_expr, score_conf_key
    from riskudf.scoring.pipeline import score_and_grade, set_arrow_batches

    spark = bench_spark(job)
    conf = load_config(job.conf)
    conf = conf.model_copy(update={"reasons": conf.reasons.model_copy(update={"enabled": False})})
    set_arrow_batches(spark, conf.scoring)
    manifest, files = load_artifact_bytes(job.model_dir)
    artifact = spark.sparkContext.broadcast(files)
    partitions = conf.scoring.partitions or spark.sparkContext.defaultParallelism
    documents = spark.read.parquet(job.docs)

    model_key = artifact_key(files)
    documents = documents.withColumn(
        "fingerprint",
        fingerprint_expr(
            F.col("document"), model_key=model_key, conf_key=score_conf_key(conf.scoring)
        ),
    )

    def run(frame: Any) -> pd.DataFrame:
        scored = score_and_grade(
            frame, conf, artifact, manifest, model_key, partitions, run_id="bench"
        )
        return scored.select("obligor_id", "pd").toPandas()

    run(documents.limit(WARMUP_DOCS))
    start = time.perf_counter()
    pds = run(documents)
    return pds, time.perf_counter() - start


def make_predict_fn(model_dir: str, precision: str, device: str) -> Any:
    """(c)'s model loader, as predict_batch_udf wants it: runs once per Python worker."""

    def make() -> Any:
        import torch

        from riskudf.model.load import load_artifact
        from riskudf.scoring.device import quantize_int8

        manifest, tokenizer, model = load_artifact(model_dir)
        if precision == "int8":
            model = quantize_int8(model)
        model = model.to(device)

        def predict(texts: np.ndarray) -> np.ndarray:
            encoded = tokenizer(
                [str(t) for t in texts],
                padding="longest",
                truncation=True,
                max_length=manifest.max_length,
                return_tensors="pt",
            ).to(device)
            with torch.inference_mode(), _autocast(precision, device):
                logits = model(**encoded).logits.float()
            return torch.softmax(logits, -1)[:, manifest.positive_label].cpu().numpy()

        return predict

    return make


def predict_batch_stage(job: Job, fp32: bool = False) -> tuple[pd.DataFrame, float]:
    """(c): pyspark.ml.functions.predict_batch_udf, fixed batches of 64, same partitions;
    ``fp32``: (f), at fp32 whatever the conf asks."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType

    from riskudf.config import load_config
    from riskudf.scoring.device import device_precision

    spark = bench_spark(job)
    conf = load_config(job.conf)
    precision = "fp32" if fp32 else device_precision(conf.scoring.precision, job.device)
    udf = predict_batch_udf(
        make_predict_fn(job.model_dir, precision, job.device),
        return_type=DoubleType(),
        batch_size=FIXED_BATCH,
    )
    partitions = conf.scoring.partitions or spark.sparkContext.defaultParallelism
    if job.device.startswith("cuda"):
        partitions = 1  # one model per GPU, as the project's stage
    documents = spark.read.parquet(job.docs)

    def run(frame: Any) -> pd.DataFrame:
        scored = frame.repartition(partitions, "obligor_id").select(
            "obligor_id", udf(F.col("document")).alias("pd")
        )
        return scored.toPandas()

    run(documents.limit(WARMUP_DOCS))
    start = time.perf_counter()
    pds = run(documents)
    return pds, time.perf_counter() - start


def write_documents(job: Job, n_docs: int) -> None:
    """The demo portfolio's first ``n_docs`` non-empty documents as of the demo date, one file."""
    from pyspark.sql import functions as F

    from demo.portfolio import DemoSpec, generate
    from riskudf.config import load_config
    from riskudf.documents.assemble import assemble_documents
    from riskudf.documents.redact import redact_documents

    spark = bench_spark(job)
    spec = DemoSpec()
    n_obligors = int(n_docs * 1.05) + 10
    portfolio = generate(spark, "portfolio", n_obligors, spec)
    documents = assemble_documents(
        portfolio,
        generate(spark, "reports", n_obligors, spec),
        generate(spark, "filings", n_obligors, spec),
        as_of=spec.as_of,
        filing_lookback_days=730,
    )
    # The documents the model reads, as build_documents leaves them: redacted.
    documents, _ = redact_documents(
        documents.where(F.length("document") > 0), portfolio, load_config(job.conf).redaction
    )
    (
        documents.orderBy("obligor_id")
        .limit(n_docs)
        .select("obligor_id", "n_filings", "report_age_days", "redactions", "document")
        .coalesce(1)
        .write.mode("overwrite")
        .parquet(job.docs)
    )


def long_documents(texts: list[str], n_docs: int, chars: int = LONG_CHARS) -> list[str]:
    """``n_docs`` documents of exactly ``chars`` characters, each demo documents end to end."""
    out = []
    for i in range(n_docs):
        parts, size, j = [], -2, i  # size: the joined length so far
        while size < chars:
            parts.append(texts[j % len(texts)])
            size += len(parts[-1]) + 2
            j += 1
        out.append("\n\n".join(parts)[:chars])
    return out


def long_stage(job: Job, n_docs: int) -> dict[str, float]:
    """The project's scoring stage on long documents, with the conf's Arrow byte bound (and
    without it when the conf's ``arrow_batch_bytes`` is 2**31 - 2): the workers' peak memory
    and largest batch, from the run's WorkerStats."""
    from riskudf.config import load_config
    from riskudf.model.artifact import artifact_key, load_artifact_bytes
    from riskudf.scoring.pipeline import score_and_grade, set_arrow_batches
    from riskudf.scoring.worker import WorkerStats, worker_rows

    spark = bench_spark(job)
    conf = load_config(job.conf)
    conf = conf.model_copy(update={"reasons": conf.reasons.model_copy(update={"enabled": False})})
    texts = pd.read_parquet(job.docs)["document"].tolist()
    frame = pd.DataFrame({"document": long_documents(texts, n_docs)})
    frame["obligor_id"] = [f"L{i:05d}" for i in range(n_docs)]
    frame["fingerprint"] = frame["obligor_id"]
    frame["n_filings"] = 0
    frame["report_age_days"] = 0
    frame["redactions"] = [[0]] * n_docs
    documents = spark.createDataFrame(frame).repartition(2).cache()
    documents.count()
    set_arrow_batches(spark, conf.scoring)
    manifest, files = load_artifact_bytes(job.model_dir)
    stats = spark.sparkContext.accumulator({}, WorkerStats())
    start = time.perf_counter()
    scored = score_and_grade(
        documents,
        conf,
        spark.sparkContext.broadcast(files),
        manifest,
        artifact_key(files),
        2,
        run_id="bench-long",
        stats=stats,
    )
    scored.select("obligor_id", "pd").write.format("noop").mode("overwrite").save()
    seconds = time.perf_counter() - start
    workers = worker_rows(stats.value)
    return {
        "seconds": seconds,
        "peak_rss_mb": max(w["peak_rss_mb"] for w in workers),
        "max_batch_rows": max(w["max_batch_rows"] for w in workers),
        "max_batch_chars": max(w["max_batch_chars"] for w in workers),
        "workers": len(workers),
    }


def run_path(job: Job, n_docs: int = 0) -> None:
    """A child's work: one path, its PDs to ``out``.parquet and its timing to ``out``.json."""
    if job.path == "docs":
        write_documents(job, n_docs)
        return
    if job.path == "long":
        Path(f"{job.out}.json").write_text(json.dumps(long_stage(job, n_docs)))
        return
    if job.path in ("b", "c", "e", "f"):
        if job.path in ("b", "e"):  # (e): the same stage, given the int8 version's directory
            frame, seconds = spark_stage(job)
        else:
            frame, seconds = predict_batch_stage(job, fp32=job.path == "f")
    else:
        docs = pd.read_parquet(job.docs)
        texts = docs["document"].tolist()
        score = raw_loop if job.path == "a" else pipeline_loop
        pds, seconds = score(job, texts)
        frame = pd.DataFrame({"obligor_id": docs["obligor_id"], "pd": pds})
    started = time.time() - seconds
    frame.to_parquet(f"{job.out}.parquet")
    timing = {"seconds": seconds, "docs": len(frame), "started": started}
    Path(f"{job.out}.json").write_text(json.dumps(timing))


# --- the parent ------------------------------------------------------------------------------


def precision_check(job: Job, texts: list[str]) -> list[str]:
    """Raw-loop docs/s and largest |PD - fp32| for each CPU precision on a sample."""
    import torch

    from riskudf.config import load_config
    from riskudf.model.load import load_artifact
    from riskudf.scoring.scorer import Scorer, ScoringOptions

    torch.set_num_threads(job.threads)
    budget = load_config(job.conf).scoring.token_budget
    lines = []
    reference: np.ndarray | None = None
    for precision in ("fp32", "bf16", "int8"):
        manifest, tokenizer, model = load_artifact(job.model_dir)
        options = ScoringOptions(
            max_length=manifest.max_length, token_budget=budget, precision=precision
        )
        scorer = Scorer(
            tokenizer, model, positive_label=manifest.positive_label, device="cpu", options=options
        )
        scorer.score(texts[:8])
        start = time.perf_counter()
        pds = scorer.score(texts)["pd"].to_numpy()
        seconds = time.perf_counter() - start
        reference = pds if reference is None else reference
        lines.append(
            f"  {precision:5s} {len(texts) / seconds:8.1f} docs/s   "
            f"max |PD - fp32| = {np.abs(pds - reference).max():.2e}"
        )
    return lines


def pooling_check(job: Job, texts: list[str]) -> list[str]:
    """Scorer docs/s of a text-only probe on the packaged backbone (fp32) for each pooling:
    the token mean of the document's head (its first max_length tokens) against every line or
    paragraph read alone (every token)."""
    import torch

    from riskudf.config import load_config
    from riskudf.model.features import no_columns
    from riskudf.model.fused import FusedClassifier
    from riskudf.model.load import load_encoder, load_tokenizer
    from riskudf.scoring.scorer import Scorer, ScoringOptions
    from riskudf.training.finetune import default_backbone_dir

    torch.set_num_threads(job.threads)
    conf = load_config(job.conf)
    backbone = default_backbone_dir()
    tokenizer = load_tokenizer(backbone)
    options = ScoringOptions(
        max_length=conf.training.max_length,
        token_budget=conf.scoring.token_budget,
        precision="fp32",
    )
    out, base = [], 0.0
    for pooling in ("mean", "paragraphs", "lines"):
        spec = no_columns(pooling)
        model = FusedClassifier(load_encoder(backbone), spec, 2).eval()
        scorer = Scorer(
            tokenizer,
            model,
            positive_label=1,
            device="cpu",
            options=options,
            features=spec.to_dict(),
        )
        scorer.score(texts[:8])
        start = time.perf_counter()
        windows = int(scorer.score(texts)["n_chunks"].sum())
        rate = len(texts) / (time.perf_counter() - start)
        base = base or rate
        out.append(
            f"  {pooling:10s} {rate:8.1f} docs/s ({rate / base:.2f} x mean)   "
            f"{windows / len(texts):.1f} windows per document"
        )
    return out


# Long on purpose: set-up, two scoring passes and their comparison.
def explain_check(job: Job, texts: list[str]) -> list[str]:
    """Reason codes (conf ``reasons``) on the documents, with the scorer the UDF runs: seconds
    added per flagged row, spans occluded per flagged row, and fidelity (PD drop when the top
    reason's span is removed, against a random run of tokens of the same length)."""
    import torch

    from riskudf.config import load_config
    from riskudf.model.load import load_artifact
    from riskudf.scoring.device import device_precision
    from riskudf.scoring.reasons import fidelity_drops, mapped_spans, occlusion_weights
    from riskudf.scoring.scorer import ExplainOptions, Scorer, ScoringOptions

    torch.set_num_threads(job.threads)
    conf = load_config(job.conf)
    if not conf.reasons.enabled:
        return ["  reasons disabled in the conf"]
    manifest, tokenizer, model = load_artifact(job.model_dir)
    base = ScoringOptions(
        max_length=manifest.max_length,
        token_budget=conf.scoring.token_budget,
        precision=device_precision(conf.scoring.precision, job.device),
    )
    # Every document is explained, whatever its decision: the cost per flagged row is measured
    # on all N, not only on those the bench model happens to flag.
    every = conf.reasons.model_copy(update={"decisions": ("approve", "review", "decline")})
    explain = ExplainOptions(every, conf.grading)

    def scorer(options: ScoringOptions) -> Scorer:
        return Scorer(
            tokenizer,
            model,
            positive_label=manifest.positive_label,
            device=job.device,
            options=options,
            calibration=manifest.calibration,
            chunking=manifest.chunking or None,
        )

    plain, explaining = scorer(base), scorer(replace(base, explain=explain))
    plain.score(texts[:8])
    start = time.perf_counter()
    pds = plain.score(texts)["pd"].to_numpy()
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    reasons = explaining.score(texts)["reasons"]
    explain_s = time.perf_counter() - start
    flagged = [i for i, r in enumerate(reasons) if r is not None]
    lines = [
        f"  {len(flagged)} of {len(texts)} rows explained (every decision); "
        f"scoring {plain_s:.1f} s, with reasons {explain_s:.1f} s",
        f"  overhead {(explain_s - plain_s) / max(1, len(flagged)):.3f} s per flagged row, "
        f"{explaining.occluded_spans / max(1, len(flagged)):.1f} spans occluded per flagged "
        f"row, {sum(bool(reasons[i]) for i in flagged)} flagged rows with at least one reason",
    ]
    if flagged and not explaining.chunking:
        chosen = [texts[i] for i in flagged]
        encoded = tokenizer(chosen, return_offsets_mapping=True, verbose=False)
        occlusions = [
            mapped_spans(t, o, explaining.library, read_tokens=manifest.max_length)
            for t, o in zip(chosen, encoded["offset_mapping"], strict=True)
        ]
        ids, flagged_pds = encoded["input_ids"], pds[flagged]
        weights = occlusion_weights(ids, flagged_pds, occlusions, explaining.pds_of_ids)
        top, random = fidelity_drops(
            ids,
            flagged_pds,
            occlusions,
            weights,
            explaining.pds_of_ids,
            np.random.default_rng(0),
            read_tokens=manifest.max_length,
        )
        if len(top):
            lines.append(
                f"  fidelity ({len(top)} rows): mean PD drop removing the top reason's span "
                f"{top.mean():.5f}, a random span of the same length {random.mean():.5f} "
                f"(mean |drop| {np.abs(random).mean():.5f}); top > |random| in "
                f"{100 * np.mean(top > np.abs(random)):.0f} % of rows"
            )
    return lines


def bench_model(model_dir: Path, max_length: int) -> None:
    """The bench model: the packaged MiniLM backbone with a seeded, untrained 2-class head,
    published as a riskudf artifact (the same weights for all four paths)."""
    import torch

    from riskudf.config import TrainingConf
    from riskudf.model.load import load_sequence_classifier, load_tokenizer
    from riskudf.training.finetune import default_backbone_dir, publish_model

    backbone = default_backbone_dir()
    torch.manual_seed(0)
    publish_model(
        load_tokenizer(backbone),
        load_sequence_classifier(backbone, num_labels=2),
        model_dir,
        backbone=str(backbone),
        conf=TrainingConf(max_length=max_length),
        training_table="bench (untrained head)",
        training_table_version=None,
        metrics={},
        model_version="bench-untrained-head",
    )


INT8_CALIBRATION_DOCUMENTS = 64


def _current_int8(directory: Path) -> bool:
    """Whether ``directory`` holds an int8 version made by this code's method (a workdir kept
    from an earlier commit may hold another)."""
    from riskudf.model.artifact import read_manifest
    from riskudf.model.quantized import METHOD

    if not (directory / "manifest.json").is_file():
        return False
    return read_manifest(directory).quantization.get("method") == METHOD


def bench_model_int8(model_dir: Path, out: Path, texts: list[str]) -> None:
    """The bench model's int8 version, published as its own artifact as the training job does
    (riskudf.model.quantized), its input scales observed on ``texts`` (the first bench
    documents: the bench measures speed, not accuracy): what path (e) scores."""
    import torch

    from riskudf.config import ChunkingConf, TrainingConf
    from riskudf.model.load import load_artifact
    from riskudf.model.quantized import METHOD, quantize
    from riskudf.training.finetune import publish_model, score_texts

    manifest, tokenizer, model = load_artifact(model_dir)
    chunking = ChunkingConf(**manifest.chunking) if manifest.chunking else None

    def calibrate(fp32: Any) -> None:
        score_texts(
            tokenizer,
            fp32,
            texts,
            max_length=manifest.max_length,
            chunking=manifest.chunking or None,
            features=manifest.features or None,
        )

    publish_model(
        tokenizer,
        quantize(model, calibrate),
        out,
        backbone=manifest.backbone,
        conf=TrainingConf(max_length=manifest.max_length, chunking=chunking),
        training_table=manifest.training_table,
        training_table_version=None,
        metrics={},
        calibration=manifest.calibration,  # the parent's: the same PDs up to int8's error
        features=manifest.features,
        redaction=manifest.redaction,
        model_version=f"{manifest.model_version}-int8",
        quantization={
            "method": METHOD,
            "engine": str(torch.backends.quantized.engine),
            "parent_version": manifest.model_version,
        },
    )


def child_env(workdir: Path) -> dict[str, str]:
    """Children's environment: no project spark-defaults (no metastore), offline models."""
    conf_dir = workdir / "spark-conf"
    conf_dir.mkdir(exist_ok=True)
    log4j = Path(__file__).resolve().parents[1] / "conf/spark/log4j2.properties"
    if log4j.is_file():
        (conf_dir / "log4j2.properties").write_text(log4j.read_text())
    env = dict(os.environ)
    env.update(
        SPARK_CONF_DIR=str(conf_dir),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


# Long on purpose: runs the four paths in children and prints the table, in order.
def main(
    *,
    n_docs: int,
    conf: str,
    model_dir: str | None,
    threads: int,
    master: str,
    device: str,
    check_docs: int,
    workdir: str | None,
    entry: str,
    long_docs: int = 0,
) -> int:
    """Run the four paths one after another and print the table; ``entry`` is the script that
    runs one path in a child (``entry --child JOB_JSON``)."""
    import torch

    from riskudf.config import load_config
    from riskudf.model.load import load_tokenizer
    from riskudf.scoring.device import device_precision

    root = Path(workdir or tempfile.mkdtemp(prefix="riskudf-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    env = child_env(root)
    clock = time.monotonic()
    print(f"riskudf bench: {n_docs} documents, workdir {root}", flush=True)
    print(f"cpu: {cpu_model()}, {os.cpu_count()} cores; load average at start {load_average()}")
    if model_dir is None:
        model_dir = str(root / "model")
        if not (Path(model_dir) / "manifest.json").is_file():
            bench_model(Path(model_dir), max_length=256)
        print("model: packaged MiniLM-L6 backbone with an untrained, seeded head (bench only)")
    else:
        print(f"model: {model_dir}")
    base = Job(
        "docs",
        str(root / f"docs-redacted-{n_docs}.parquet"),
        model_dir,
        conf,
        "",
        threads,
        master,
        device,
    )

    gpu = device.startswith("cuda")

    from riskudf.model.artifact import read_manifest

    parent = read_manifest(Path(model_dir)).model_version
    int8_dir = root / f"model-int8-{parent}"

    def child(path: str, docs: int = n_docs, conf: str = conf) -> tuple[int, Usage]:
        job = Job(**{**base.__dict__, "path": path, "out": str(root / f"out-{path}"), "conf": conf})
        if path == "e":
            job = replace(job, model_dir=str(int8_dir))
        command = [sys.executable, entry, "--child", job.to_json(), "--docs", str(docs)]
        return run_sampled(command, env, gpu=gpu and path != "docs")

    if not Path(base.docs).exists():
        code, _ = child("docs")
        if code != 0:
            print("bench: writing the demo documents failed", file=sys.stderr)
            return 1
    docs = pd.read_parquet(base.docs)
    texts = docs["document"].tolist()
    if not gpu and not _current_int8(int8_dir):
        bench_model_int8(Path(model_dir), int8_dir, texts[:INT8_CALIBRATION_DOCUMENTS])
    tokenizer = load_tokenizer(model_dir)
    from riskudf.model.artifact import read_manifest

    manifest = read_manifest(Path(model_dir))
    lengths = np.array(
        [min(len(ids), manifest.max_length) for ids in tokenizer(texts, verbose=False)["input_ids"]]
    )
    config = json.loads((Path(model_dir) / "config.json").read_text())
    shape = BertShape(
        config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]
    )
    flops = bert_flops(lengths, shape)
    scoring = load_config(conf).scoring
    precision = device_precision(scoring.precision, device)
    print(
        f"documents: {len(texts)}, tokens per document (window {manifest.max_length}): mean "
        f"{lengths.mean():.0f}, max {lengths.max()}; {flops / len(texts) / 1e9:.2f} GFLOP each"
    )
    print(
        f"conf {conf}: precision {scoring.precision} -> {precision} on {device}, token_budget "
        f"{scoring.token_budget}, arrow_batch_rows {scoring.arrow_batch_rows}; spark {master}, "
        f"raw/pipeline torch threads {threads}"
    )
    if check_docs > 0 and device == "cpu":
        print(f"precision check (raw loop, first {min(check_docs, len(texts))} documents):")
        for line in precision_check(base, texts[:check_docs]):
            print(line)
    if check_docs > 0 and device == "cpu":
        print(f"probe pooling (scorer, first {min(check_docs, len(texts))} documents):")
        for line in pooling_check(base, texts[:check_docs]):
            print(line)
    if check_docs > 0:
        print(f"reason codes (scorer, first {min(check_docs, len(texts))} documents):")
        for line in explain_check(base, texts[:check_docs]):
            print(line)
    peak = matmul_peak_gflops(precision, threads, device)
    torch.set_num_threads(threads)

    rates: dict[str, float] = {}
    rows = []
    reference: pd.Series | None = None
    for path in PATHS:
        if gpu and path in ("e", "f"):  # an int8 version runs on CPUs only
            continue
        print(f"running ({path}) {PATHS[path]} ...", flush=True)
        code, usage = child(path)
        if code != 0:
            print(f"bench: path ({path}) failed with exit code {code}", file=sys.stderr)
            return 1
        timing = json.loads(Path(root / f"out-{path}.json").read_text())
        scored = pd.read_parquet(root / f"out-{path}.parquet").set_index("obligor_id")["pd"]
        reference = scored if reference is None else reference
        diff = float(np.abs(scored.reindex(reference.index) - reference).max())
        rates[path] = timing["docs"] / timing["seconds"]
        rows.append(
            f"({path}) {PATHS[path]:22s} {timing['docs']:6d} {timing['seconds']:9.1f} "
            f"{rates[path]:9.1f} {usage.peak_mib:10.0f} {flops / timing['seconds'] / 1e9:9.1f} "
            f"{diff:11.1e}"
        )
        if gpu:
            start, end = timing["started"], timing["started"] + timing["seconds"]
            busy = [b for t, b in usage.gpu_busy if start <= t <= end] or [float("nan")]
            rows[-1] += (
                f"   GPU busy mean {np.mean(busy):.0f} % (max {np.max(busy):.0f}), "
                f"peak GPU memory {usage.gpu_peak_mib:.0f} MiB"
            )
    print()
    print(
        f"{'path':26s} {'docs':>6s} {'seconds':>9s} {'docs/s':>9s} {'peak MiB':>10s} "
        f"{'GFLOP/s':>9s} {'max|PD-a|':>11s}"
    )
    for row in rows:
        print(row)
    b_over = {path: ratio(rates["b"], rates[path]) for path in "acd"}
    print(f"ratios: b/a {b_over['a']:.3f}, b/c {b_over['c']:.3f}, b/d {b_over['d']:.3f}")
    if "e" in rates:
        print(
            f"int8 version: e/f {ratio(rates['e'], rates['f']):.3f} (the Spark stage, int8, "
            f"against predict_batch_udf at fp32), e/b {ratio(rates['e'], rates['b']):.3f} "
            f"(against the Spark stage at {precision}); cpu {cpu_model()}"
        )
    spark_gflops = flops / (len(texts) / rates["b"]) / 1e9
    print(
        f"matmul peak ({precision}, {threads} threads): {peak:.0f} GFLOP/s; Spark stage "
        f"{spark_gflops:.0f} GFLOP/s = {100 * spark_gflops / peak:.0f} % of peak; raw loop "
        f"{100 * flops / (len(texts) / rates['a']) / 1e9 / peak:.0f} %"
    )
    if long_docs > 0 and not long_document_memory(child, root, conf, long_docs, scoring):
        return 1
    print(f"load average at end {load_average()}; bench took {time.monotonic() - clock:.0f} s")
    print(result_line(rates))
    return 0


def long_document_memory(child: Any, root: Path, conf: str, n_docs: int, scoring: Any) -> bool:
    """The long-document case: the Spark stage with the conf's Arrow byte bound and without it;
    prints each worker's peak memory (RSS) and the largest batch."""
    unbounded = root / "conf-unbounded.yaml"
    unbounded.write_text(
        f"base: {Path(conf).resolve()}\nscoring:\n  arrow_batch_bytes: {2**31 - 2}\n"
    )
    print()
    print(
        f"long documents: {n_docs} of {LONG_CHARS:,} characters, the Spark stage, 2 workers, "
        f"arrow_batch_rows {scoring.arrow_batch_rows}"
    )
    for label, path in (
        (f"arrow_batch_bytes {scoring.arrow_batch_bytes:,}", conf),
        ("no byte bound", str(unbounded)),
    ):
        code, _ = child("long", n_docs, path)
        if code != 0:
            print(f"bench: the long-document case failed with exit code {code}", file=sys.stderr)
            return False
        got = json.loads((root / "out-long.json").read_text())
        print(
            f"  {label:32s} peak Python worker memory {got['peak_rss_mb']:7.0f} MiB; largest "
            f"batch {got['max_batch_rows']:.0f} rows, {got['max_batch_chars'] / 2**20:.0f} MiB "
            f"of text; {got['seconds']:.0f} s"
        )
    return True
