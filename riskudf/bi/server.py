"""The BI endpoint: a Spark Thrift Server (HiveServer2 protocol, JDBC) over this session."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from riskudf.bi.users import users
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


# The session extension that limits what BI statements read (riskudf/bi/jvm/OutputsOnly.java);
# Delta's comes first, as in spark-defaults.conf.
EXTENSIONS = "io.delta.sql.DeltaSparkSessionExtension,riskudf.bi.OutputsOnly"
BI_SESSION_SETTINGS = {"spark.sql.extensions": EXTENSIONS, "spark.sql.runSQLOnFiles": "false"}
READABLE_PROPERTY = "riskudf.bi.readable"


def auth_settings(bi: BiConf) -> dict[str, str]:
    """HiveServer2's authentication keys for ``bi.auth``. The providers read them from a fresh
    HiveConf, which takes them from the JVM's system properties."""
    if bi.auth == "ldap":
        assert bi.ldap is not None  # checked by the config
        settings = {
            "hive.server2.authentication": "LDAP",
            "hive.server2.authentication.ldap.url": bi.ldap.url,
        }
        if bi.ldap.base_dn:
            settings["hive.server2.authentication.ldap.baseDN"] = bi.ldap.base_dn
        if bi.ldap.domain:
            settings["hive.server2.authentication.ldap.Domain"] = bi.ldap.domain
        return settings
    password_file = Path(bi.password_file).resolve()
    if not users(password_file):
        raise BiServerError(
            f"no BI users in {password_file}: add one with make bi-user BI_USER=<name>"
        )
    return {
        "hive.server2.authentication": "CUSTOM",
        "hive.server2.custom.authentication.class": "riskudf.bi.PasswordFile",
        "riskudf.bi.password.file": str(password_file),
    }


def start_thrift_server(
    spark: SparkSession, bi: BiConf, *, readable: Sequence[str] = ()
) -> ThriftServer:
    """Start the HiveServer2-protocol server on ``bi.host:bi.port`` over this session.

    JDBC sessions are new sessions of ``spark``: same catalog (metastore), same Delta settings.
    Users log in as ``bi.auth`` says. With ``readable`` (qualified table names) and the session
    started with BI_SESSION_SETTINGS, statements read those tables and riskudf's views only.
    """
    if is_listening(bi.host, bi.port):
        raise BiServerError(f"port {bi.host}:{bi.port} is already in use")
    jvm: Any = spark._jvm
    auth = auth_settings(bi)
    for key, value in auth.items():
        jvm.java.lang.System.setProperty(key, value)
    if readable:
        jvm.java.lang.System.setProperty(READABLE_PROPERTY, ",".join(readable))
    # The server takes its HiveConf from the execution Hive client, which reuses this thread's
    # Hive SessionState when one exists (it does once the catalog was used, e.g. by
    # publish_bi_objects): set the keys there, and in the session for a fresh state.
    hive_settings = {
        "hive.server2.thrift.bind.host": bi.host,
        "hive.server2.thrift.port": str(bi.port),
        "hive.server2.transport.mode": "binary",
        "hive.server2.authentication": auth["hive.server2.authentication"],
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
