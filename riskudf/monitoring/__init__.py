"""Monitoring of a published run: profiles, drift, migration, backtest, fairness, alerts."""
