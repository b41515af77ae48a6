"""SparkSession factory.

The JVM-level settings (Delta jars, extensions, catalog, warehouse, metastore) come from the Spark
defaults that ``spark-submit`` reads (``conf/spark/spark-defaults.conf`` locally, the cluster's own
elsewhere). The YAML config may add session settings on top.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pyspark import SparkContext
from pyspark.sql import SparkSession

from riskudf.config import GpuConf, SparkConf
from riskudf.lakehouse.metastore import ensure_metastore


def build_spark(conf: SparkConf, gpu: GpuConf | None = None) -> SparkSession:
    """Return the active SparkSession, or create one with the configured settings (and the
    executors' GPU settings when scoring runs on GPUs)."""
    settings = {**(gpu.spark_settings() if gpu else {}), **conf.session_settings()}
    # Event logs are set when the context starts: a running one (a test's) keeps its own.
    if conf.event_log_dir is not None and SparkContext._active_spark_context is None:
        _ensure_local_folder(conf.event_log_dir)
    builder = SparkSession.builder.appName(conf.app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # The local lakehouse's metastore is a Derby network server (riskudf.lakehouse.metastore): start
    # it if the defaults name one and it is down. The Hive catalog connects lazily, on the first
    # catalog access, so this runs before it. A no-op for embedded or remote metastores.
    ensure_metastore(dict(spark.sparkContext.getConf().getAll()))
    # getOrCreate may return a running session (a test's, or one started by spark-submit):
    # runtime settings still apply to it; static ones were fixed when its JVM started.
    for key, value in settings.items():
        if spark.conf.isModifiable(key):
            spark.conf.set(key, value)
    return spark


def _ensure_local_folder(location: str) -> None:
    """Create a local folder (a path or file: URI); Spark refuses an event log folder that does
    not exist. Other schemes (hdfs:, s3a:) are the cluster's to create."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        Path(parsed.path if parsed.scheme else location).mkdir(parents=True, exist_ok=True)
