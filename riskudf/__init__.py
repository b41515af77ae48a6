"""riskudf: nightly credit-portfolio scoring with a fine-tuned transformer on Spark and Delta."""

__version__ = "0.1.0"
