"""Scoring: nightly phases, pandas UDF, scorer, grades, reason codes, incremental runs."""
