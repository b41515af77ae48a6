"""Lakehouse plumbing: Spark session, Delta tables and schemas, metastore, leases, spark-submit."""
