"""The model: artifact, loading, features, the fused classifier, calibration, registry."""
