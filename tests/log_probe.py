"""Run by spark-submit in test_logging: failures of Spark's own that quote an input value, in
a task (a cast, a Python UDF) and in the driver's analysis. Prints the classes it caught."""

import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskudf.safe_logging import setup_logging

SENTINEL = sys.argv[1]
setup_logging()  # the jobs' Python-side logging
spark = SparkSession.builder.master("local[2]").appName("log-probe").getOrCreate()
values = spark.createDataFrame([(SENTINEL,), ("12",)], "v string").repartition(2)


@F.udf("int")
def parse(value: str) -> int:
    return int(value)  # ValueError: invalid literal for int() with base 10: '<value>'


for name, failing in (
    ("cast", lambda: values.selectExpr("CAST(v AS INT) AS i").collect()),
    ("udf", lambda: values.select(parse("v")).collect()),
    ("analysis", lambda: spark.sql(f"SELECT CAST('{SENTINEL}' AS INT)").collect()),
):
    try:
        failing()
    except Exception as exc:  # the probe reports what failed
        print(f"{name} failed: {type(exc).__name__}", flush=True)
spark.stop()
