"""The local metastore's Derby network server: URL parsing, start, stop, a foreign port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import free_port

from riskudf.lakehouse.metastore import (
    DerbyServer,
    MetastoreError,
    ensure_metastore,
    is_listening,
    parse_client_url,
    read_spark_defaults,
    server_from_spark_conf,
    stop_server,
)

ROOT = Path(__file__).resolve().parents[1]
URL = "spark.hadoop.javax.jdo.option.ConnectionURL"


def test_the_shipped_defaults_name_a_loopback_server_under_the_lakehouse() -> None:
    conf = read_spark_defaults(ROOT / "conf/spark/spark-defaults.conf")
    server = server_from_spark_conf(conf, cwd=ROOT)
    assert server == DerbyServer(host="127.0.0.1", port=1527, home=ROOT / "lakehouse")
    assert parse_client_url(conf[URL]) == ("127.0.0.1", 1527, "metastore_db")


def test_embedded_and_remote_metastores_are_left_alone() -> None:
    embedded = {URL: "jdbc:derby:;databaseName=metastore_db;create=true"}
    assert server_from_spark_conf({**embedded, "spark.riskudf.metastore.home": "x"}) is None
    remote = {URL: "jdbc:derby://db.internal:1527/ms", "spark.riskudf.metastore.home": "x"}
    assert server_from_spark_conf(remote) is None
    assert server_from_spark_conf({URL: "jdbc:derby://127.0.0.1:1527/ms"}) is None
    ensure_metastore(embedded)  # nothing to start, nothing raised


def test_ensure_starts_once_and_stop_ends_it(tmp_path: Path) -> None:
    port = free_port()
    conf = {
        URL: f"jdbc:derby://127.0.0.1:{port}/metastore_db;create=true",
        "spark.riskudf.metastore.home": str(tmp_path / "lakehouse"),
    }
    jars = ROOT / "jars"
    server = server_from_spark_conf(conf)
    assert server is not None
    try:
        ensure_metastore(conf, jars_dir=jars)
        assert is_listening("127.0.0.1", port)
        pid = (tmp_path / "lakehouse/derby-server.pid").read_text()
        ensure_metastore(conf, jars_dir=jars)  # already up: no second server
        assert (tmp_path / "lakehouse/derby-server.pid").read_text() == pid
    finally:
        assert stop_server(server, jars_dir=jars)
    assert not is_listening("127.0.0.1", port)
    assert not stop_server(server, jars_dir=jars)


def test_a_port_held_by_another_process_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        conf = {
            URL: f"jdbc:derby://127.0.0.1:{port}/metastore_db",
            "spark.riskudf.metastore.home": str(tmp_path),
        }
        with pytest.raises(MetastoreError, match="not this lakehouse's metastore"):
            ensure_metastore(conf, jars_dir=ROOT / "jars")
