"""Evidence about a model version: the supervisor's validation tests and the promotion gate."""
