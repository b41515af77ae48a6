"""The fused classifier: a transformers encoder's pooled text embedding concatenated with the
encoded structured features (riskudf.model.features), then one Linear head.

Saved as the encoder's own directory (config.json, model.safetensors) plus
``feature_head.safetensors`` (the head's weight and bias); the feature spec is in the manifest.
riskudf.model.load loads it back (load_fused).
This module imports torch: import it only where a model is built or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers.modeling_outputs import SequenceClassifierOutput

from riskudf.model.features import FeatureSpec

HEAD_FILE = "feature_head.safetensors"


class FusedClassifier(torch.nn.Module):
    """``encoder`` (an AutoModel) -> pooled embedding ++ features -> dropout -> Linear."""

    def __init__(self, encoder: Any, spec: FeatureSpec, num_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.spec = spec
        hidden = int(encoder.config.hidden_size)
        self.dropout = torch.nn.Dropout(float(getattr(encoder.config, "hidden_dropout_prob", 0.1)))
        self.head = torch.nn.Linear(hidden + spec.width, num_labels)
        self.config = encoder.config  # Scorer and Trainer read config.num_labels
        self.config.num_labels = num_labels

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # lines, paragraphs: each window is one segment (or a piece of a long one), mean-pooled;
        # the scorer averages a document's window logits, which for this linear head is the head
        # of the mean of its window embeddings (in eval mode).
        if self.spec.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        features: torch.Tensor,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        text = self.pool(hidden, attention_mask)
        fused = torch.cat([text, features.to(text.dtype)], dim=-1)
        logits = self.head(self.dropout(fused))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)  # type: ignore[arg-type]

    def save_pretrained(self, directory: str | Path, safe_serialization: bool = True) -> None:
        """The encoder as a transformers directory, the head beside it (safetensors only)."""
        directory = Path(directory)
        self.encoder.save_pretrained(directory, safe_serialization=True)
        head = {name: t.detach().contiguous().cpu() for name, t in self.head.state_dict().items()}
        save_file(head, str(directory / HEAD_FILE), metadata={"format": "pt"})
