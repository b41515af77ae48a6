"""The BI endpoint: a Spark Thrift Server (HiveServer2 protocol, JDBC) over this session."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from riskudf.config import BiConf
from riskudf.lakehouse.metastore import is_listening


class BiServerError(RuntimeError):
    """The Thrift server did not come up (port taken, Delta or metastore misconfigured)."""


# --- the JDBC endpoint -------------------------------------------------------------------------


def jdbc_url(bi: BiConf, database: str) -> str:
    return f"jdbc:hive2://{bi.host}:{bi.port}/{database}"


@dataclass
class ThriftServer:
    """A Spark Thrift Server running in this SparkSession's JVM."""

    handle: Any
    host: str
    port: int

    def stop(self) -> None:
        self.handle.stop()


def start_thrift_server(spark: SparkSession, bi: BiConf) -> ThriftServer:
    """Start the HiveServer2-protocol server on ``bi.host:bi.port`` over this session.

    JDBC sessions are new sessions of ``spark``: same catalog (metastore), same Delta settings.
    """
    if is_listening(bi.host, bi.port):
        raise BiServerError(f"port {bi.host}:{bi.port} is already in use")
    jvm: Any = spark._jvm
    # The server takes its HiveConf from the execution Hive client, which reuses this thread's
    # Hive SessionState when one exists (it does once the catalog was used, e.g. by
    # publish_bi_objects): set the keys there, and in the session for a fresh state.
    hive_settings = {
        "hive.server2.thrift.bind.host": bi.host,
        "hive.server2.thrift.port": str(bi.port),
        "hive.server2.transport.mode": "binary",
    }
    state = jvm.org.apache.hadoop.hive.ql.session.SessionState.get()
    for key, value in hive_settings.items():
        spark.conf.set(key, value)
        if state is not None:
            state.getConf().set(key, value)
    server_class = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
    handle = server_class.startWithSparkSession(spark._jsparkSession, False)
    deadline = time.monotonic() + bi.ready_timeout_s
    while not is_listening(bi.host, bi.port):
        if time.monotonic() > deadline:
            handle.stop()
            raise BiServerError(f"Thrift server not listening on {bi.host}:{bi.port}")
        time.sleep(0.5)
    return ThriftServer(handle=handle, host=bi.host, port=bi.port)
