"""SparkSession factory.

The JVM-level settings (Delta jars, extensions, catalog, warehouse, metastore) come from the Spark
defaults that ``spark-submit`` reads (``conf/spark/spark-defaults.conf`` locally, the cluster's own
elsewhere). The YAML config may add session settings on top.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from riskudf.config import SparkConf


def build_spark(conf: SparkConf) -> SparkSession:
    """Return the active SparkSession, or create one with the configured settings."""
    builder = SparkSession.builder.appName(conf.app_name)
    for key, value in conf.settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # getOrCreate may return a running session (a test's, or one started by spark-submit):
    # runtime settings still apply to it; static ones were fixed when its JVM started.
    for key, value in conf.settings.items():
        if spark.conf.isModifiable(key):
            spark.conf.set(key, value)
    return spark
