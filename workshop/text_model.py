"""The tiny text classifier both ray_serve servers host (the API contract is in workshop/text_api.py).

The model is built locally and deterministically from a version name and a seed (no downloads): words are
hashed into buckets, averaged by an EmbeddingBag, and fed through a wide MLP that scores three sentiment
labels. The MLP is deliberately wide so that one forward pass costs several milliseconds whatever the
batch size: the per-call cost that dynamic batching amortises.

The names of the API contract are re-exported here, so a server needs one import for both.
"""

from __future__ import annotations

import torch

from workshop.text_api import (  # noqa: F401  (re-exported: the servers use text_model.X for both)
    BUCKETS, LABELS, MAX_CHARS, MAX_TEXTS, MODEL_VERSIONS, InfoResponse, Prediction, PredictRequest,
    PredictResponse, encode, sample_texts, size_problem,
)

EMBED_DIM = 128
HIDDEN = 2048  # 4 hidden layers of 2048 x 2048: about 64 MB of weights read on every forward pass
LAYERS = 4


class TextClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(BUCKETS, EMBED_DIM, mode="mean")
        layers: list[torch.nn.Module] = [torch.nn.Linear(EMBED_DIM, HIDDEN), torch.nn.Tanh()]
        for _ in range(LAYERS - 1):
            layers += [torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Tanh()]
        layers.append(torch.nn.Linear(HIDDEN, len(LABELS)))
        self.mlp = torch.nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(self.embed(ids, offsets)), dim=-1)


def build_model(version: str = "v1", seed: int = 0) -> TextClassifier:
    """The model of a version, with weights drawn from (version, seed): same inputs, same model, any process."""
    if version not in MODEL_VERSIONS:
        raise ValueError(f"unknown model version {version!r}; choose from {MODEL_VERSIONS}")
    generator = torch.Generator().manual_seed(seed * 1000 + MODEL_VERSIONS.index(version) + 1)
    model = TextClassifier()
    with torch.no_grad():
        for param in model.parameters():
            fan_in = param.shape[-1] if param.dim() > 1 else HIDDEN
            param.copy_(torch.randn(param.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def predict_encoded(model: TextClassifier, encoded: list[list[int]]) -> list[Prediction]:
    """One forward pass over any number of encoded texts."""
    lengths = torch.tensor([len(ids) for ids in encoded])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    ids = torch.tensor([i for ids in encoded for i in ids], dtype=torch.long)
    with torch.inference_mode():
        probs = model(ids, offsets)
    return [
        Prediction(label=LABELS[int(row.argmax())], scores=[round(float(p), 6) for p in row]) for row in probs
    ]
