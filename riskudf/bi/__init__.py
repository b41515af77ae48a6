"""BI: documented tables and analyst views, and the Thrift/JDBC server."""
