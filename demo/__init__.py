"""The demo data generator and its entry point (outside the installed package)."""
