"""The benchmark a fine-tuned transformer has to beat: TF-IDF + logistic regression (scikit-learn),
trained and tested on the same split."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from riskudf.training.data import Splits
from riskudf.training.evaluate import evaluate_split

REPORTED = ("auc", "gini", "ks")


def tfidf_benchmark(splits: Splits, *, seed: int, balanced: bool) -> dict[str, float]:
    """AUC, Gini and KS on every split but train (``tfidf_validation_*``,
    ``tfidf_calibration_*``, ``tfidf_test_*``) of word and bigram TF-IDF + logistic regression
    fitted on the train split (for grades, the macro one-vs-rest AUC). ``balanced``:
    class-weighted, as the transformer's loss."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(
            max_iter=2000, class_weight="balanced" if balanced else None, random_state=seed
        ),
    )
    model.fit(splits.train["text"].tolist(), splits.train["label"].to_numpy())
    figures: dict[str, float] = {}
    for name, part in splits.parts().items():
        if name == "train":
            continue
        prefix = f"tfidf_{name}_"
        probs = np.asarray(model.predict_proba(part["text"].tolist()))
        if probs.shape[1] > 2:  # grades: macro one-vs-rest AUC only
            auc = roc_auc_score(part["label"], probs, multi_class="ovr", average="macro")
            figures[f"{prefix}macro_auc"] = float(auc)
            continue
        pds = probs[:, 1]
        metrics = evaluate_split(part["label"].to_numpy(), pds, pds, prefix=prefix)
        figures.update({f"{prefix}{key}": metrics[f"{prefix}{key}"] for key in REPORTED})
    return figures
