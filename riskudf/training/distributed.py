"""Data-parallel fine-tuning through Spark's TorchDistributor (gloo on CPUs, NCCL on GPUs).

The Trainer does the DDP work (sharded batches, gradient all-reduce, gathered evaluation)
once torchrun has started the processes; rank 0 saves the trained weights (safetensors) for
the driver to publish. Under a local master the processes run on the driver; on a cluster they
run as the tasks of one barrier stage on the executors (``local_mode=False``), and the work
folder must be one the executors and the driver share (rank 0 writes the model there).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from riskudf.config import TrainingConf
from riskudf.training.finetune import FineTuned, fine_tune

TRAINED_DIR = "trained"


def _train_process(
    train: pd.DataFrame, validation: pd.DataFrame, conf: dict[str, Any], backbone: str, work: str
) -> dict[str, Any]:
    """One torchrun process: train on its shard; rank 0 saves the model and its figures."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    tuned = fine_tune(
        train,
        validation,
        TrainingConf.model_validate(conf),
        backbone=Path(backbone),
        work_dir=Path(work),
        ddp_backend=None if torch.cuda.is_available() else "gloo",
    )
    figures = {
        "world_size": world,
        "trainable_parameters": tuned.trainable_parameters,
        "total_parameters": tuned.total_parameters,
        "epochs_run": tuned.epochs_run,
        "best_validation_auc": tuned.best_validation_auc,
        "seconds_per_epoch": tuned.seconds_per_epoch,
        "history": tuned.history,
        "features": tuned.features,
    }
    if int(os.environ.get("RANK", "0")) == 0:
        out = Path(work) / TRAINED_DIR
        tuned.model.save_pretrained(out, safe_serialization=True)
        tuned.tokenizer.save_pretrained(out)
        (out / "figures.json").write_text(json.dumps(figures))
    return figures


def fine_tune_distributed(
    spark: SparkSession,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    conf: TrainingConf,
    *,
    backbone: Path,
    work_dir: Path,
) -> FineTuned:
    """fine_tune in ``conf.processes`` processes started by TorchDistributor: on the driver under
    a local master, as Spark tasks on a cluster.

    ``spark`` must be the active session: TorchDistributor reads its master and resources.
    """
    import torch
    from pyspark.ml.torch.distributor import TorchDistributor

    from riskudf.model.features import feature_spec_of
    from riskudf.model.load import load_fused, load_sequence_classifier, load_tokenizer

    if SparkSession.getActiveSession() is not spark:
        raise ValueError("TorchDistributor needs the given Spark session to be the active one")
    local = (spark.sparkContext.master or "").startswith("local")
    distributor = TorchDistributor(
        num_processes=conf.processes, local_mode=local, use_gpu=torch.cuda.is_available()
    )
    settings = conf.model_dump(mode="json")
    distributor.run(_train_process, train, validation, settings, str(backbone), str(work_dir))
    trained = work_dir / TRAINED_DIR
    figures = json.loads((trained / "figures.json").read_text())
    spec = feature_spec_of(figures["features"])
    if spec is not None:
        from riskudf.training.finetune import label_map_of

        model = load_fused(trained, spec, len(label_map_of(conf)))
    else:
        model = load_sequence_classifier(trained).eval()
    return FineTuned(
        tokenizer=load_tokenizer(trained),
        model=model,
        trainable_parameters=figures["trainable_parameters"],
        total_parameters=figures["total_parameters"],
        epochs_run=figures["epochs_run"],
        best_validation_auc=figures["best_validation_auc"],
        seconds_per_epoch=figures["seconds_per_epoch"],
        history=figures["history"],
        world_size=figures["world_size"],
        features=figures["features"],
    )
