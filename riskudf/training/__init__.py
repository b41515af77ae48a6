"""Training: data split, fine-tuning, evaluation, the TF-IDF baseline, the model card."""
