"""The tiny text classifier both ray_serve servers host, and the one API contract they share.

The model is built locally and deterministically from a version name and a seed (no downloads): words are
hashed into buckets, averaged by an EmbeddingBag, and fed through a wide MLP that scores three sentiment
labels. The MLP is deliberately wide so that one forward pass costs several milliseconds whatever the
batch size: the per-call cost that dynamic batching amortises.

The request/response schemas, the size limits and the routes live here once, so that the FastAPI baseline
and the Ray Serve version expose exactly the same API and one client works against either.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, Optional

import torch
from pydantic import BaseModel, Field

LABELS = ("negative", "neutral", "positive")
MODEL_VERSIONS = ("v1", "v2")
BUCKETS = 8192  # hashed vocabulary size
EMBED_DIM = 128
HIDDEN = 2048  # 4 hidden layers of 2048 x 2048: about 64 MB of weights read on every forward pass
LAYERS = 4

# Documented limits of the API (both servers): more texts or longer texts are answered with 413.
MAX_TEXTS = 64
MAX_CHARS = 2000

_WORD = re.compile(r"[a-z0-9']+")


# ---- the API contract: routes, schemas, status codes -------------------------------------------------------
# POST /predict   PredictRequest -> 200 PredictResponse
#                 422: malformed JSON, a missing or wrongly typed field, an empty list of texts
#                 413: more than MAX_TEXTS texts, or a text longer than MAX_CHARS characters
# GET  /healthz   200 {"status": "ok"}
# GET  /info      200 InfoResponse (which model versions are loaded, the default, the PID that runs the model)


class PredictRequest(BaseModel):
    texts: list[str] = Field(min_length=1, description=f"1..{MAX_TEXTS} texts of up to {MAX_CHARS} characters")
    model: Optional[Literal["v1", "v2"]] = Field(default=None, description="model version; default: the server's")


class Prediction(BaseModel):
    label: str
    scores: list[float]  # probabilities, in LABELS order


class PredictResponse(BaseModel):
    model: str
    predictions: list[Prediction]


class InfoResponse(BaseModel):
    default_model: str
    models: list[str]
    pid: int  # the process that runs the default model (the Ray version: one replica of it)
    api_pid: int  # the process that answers HTTP (the Ray version: the ingress replica)


def size_problem(request: PredictRequest) -> Optional[str]:
    """The message for a 413 when the request is over the documented limits, else None."""
    if len(request.texts) > MAX_TEXTS:
        return f"too many texts: {len(request.texts)} > {MAX_TEXTS}; split the request"
    for i, text in enumerate(request.texts):
        if len(text) > MAX_CHARS:
            return f"text {i} has {len(text)} characters > {MAX_CHARS}; shorten it"
    return None


# ---- the model ----------------------------------------------------------------------------------------------


def _bucket(word: str) -> int:
    """A stable hash (Python's hash() changes between processes): the same word, the same bucket, anywhere."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % BUCKETS


def encode(text: str) -> list[int]:
    """Bucket ids of the words of one text (bucket 0 for a text without words)."""
    return [_bucket(w) for w in _WORD.findall(text.lower())] or [0]


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


def sample_texts(count: int, seed: int = 0) -> list[str]:
    """Short review-like texts for the client, the load test and the agreement check."""
    import random

    rng = random.Random(seed)
    words = ("great fast broken slow love hate fine okay terrible excellent refund works again never always "
             "battery screen price delivery support quality cheap solid awful perfect").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for _ in range(count)]
