"""The review sentiment classifier both ray_serve servers host (the API contract is in workshop/text_api.py).

A real model, offline: MiniLM (`workshop.models.SentenceEncoder`, all-MiniLM-L6-v2) turns each review into a
384-number unit vector in one forward pass over the whole list of texts; a small head turns vectors into
probabilities of the three labels. The two model versions differ only in the head:

- **v1, nearest centroid**: each label's prototype is the mean embedding of its labelled reviews in
  workshop/labelled_reviews.csv; a review gets the softmax of its cosine similarities to the three
  prototypes, sharpened by a temperature. Nothing is trained.
- **v2, logistic regression**: a multinomial logistic regression on the embeddings of the same labelled
  reviews, fitted by full-batch gradient descent from zero weights. More accurate on reviews unlike the
  examples (it weighs the directions that separate the labels, not all 384 alike).

Both heads are fitted at start-up in every process that loads the model (embedding 60 reviews: about a
second), without randomness: the same file gives the same head everywhere, number for number. Zero-shot
labels (cosine to "a negative review", ...) were tried and rejected: 58-72% right on held-out reviews.

The encoder is the expensive part (tens of milliseconds per text on one core, much less per text in a batch):
what dynamic batching amortises. The names of the API contract are re-exported here, so a server needs one
import for both.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from workshop.models import SentenceEncoder
from workshop.text_api import (  # noqa: F401  (re-exported: the servers use text_model.X for both)
    LABELS, MAX_BODY_BYTES, MAX_CHARS, MAX_TEXTS, MODEL_VERSIONS, BodySizeLimit, InfoResponse, Prediction,
    PredictRequest, PredictResponse, sample_texts, size_problem,
)

EXAMPLES = Path(__file__).resolve().parent / "labelled_reviews.csv"  # next to this file: copy workshop/ and it comes along

TEMPERATURE = 0.05  # v1: cosine similarities differ by a few hundredths; sharpen them into probabilities
# v2: logistic regression on the labelled examples
L2 = 1e-3
STEPS, LEARNING_RATE = 500, 2.0


def read_examples(path: Path = EXAMPLES) -> tuple[list[str], np.ndarray]:
    """(texts, label indices) of the labelled reviews the v2 head is fitted on."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], np.array([LABELS.index(r["label"]) for r in rows])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit_logistic_regression(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights (dim, labels) and bias (labels,) of a multinomial logistic regression, L2-regularised.

    Full-batch gradient descent from zeros in float64: no randomness, so every process fits the same head.
    """
    x = x.astype(np.float64)
    onehot = np.eye(len(LABELS))[y]
    weights, bias = np.zeros((x.shape[1], len(LABELS))), np.zeros(len(LABELS))
    for _ in range(STEPS):
        error = (softmax(x @ weights + bias) - onehot) / len(x)
        weights -= LEARNING_RATE * (x.T @ error + L2 * weights)
        bias -= LEARNING_RATE * error.sum(axis=0)
    return weights, bias


class TextClassifier:
    """MiniLM embeddings plus one version's head: `predict(texts)` is one forward pass for all texts."""

    def __init__(self, version: str = "v1", encoder: SentenceEncoder | None = None) -> None:
        if version not in MODEL_VERSIONS:
            raise ValueError(f"unknown model version {version!r}; choose from {MODEL_VERSIONS}")
        self.version = version
        self.encoder = encoder or SentenceEncoder()
        texts, labels = read_examples()
        embeddings = self.encoder.embed(texts)
        if version == "v1":  # cosine to unit-length class means: a linear head too
            centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in range(len(LABELS))])
            centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
            self.weights, self.bias = centroids.T.astype(np.float64) / TEMPERATURE, np.zeros(len(LABELS))
        else:
            self.weights, self.bias = fit_logistic_regression(embeddings, labels)

    def scores(self, texts: list[str]) -> np.ndarray:
        """Probabilities (len(texts), 3) in LABELS order."""
        return softmax(self.encoder.embed(texts).astype(np.float64) @ self.weights + self.bias)

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [Prediction(label=LABELS[int(row.argmax())], scores=[round(float(p), 6) for p in row])
                for row in self.scores(texts)]


def build_model(version: str = "v1") -> TextClassifier:
    """The classifier of a version: the packaged MiniLM and that version's head (no download, deterministic)."""
    return TextClassifier(version)
