"""The API contract of the ray_serve servers: routes, request/response schemas, size limits, tokenisation.

Defined once and imported by the FastAPI baseline, the Ray Serve version and the client, so that both
servers expose exactly the same API. No torch here: the client and the load test stay light.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Literal, Optional

from pydantic import BaseModel, Field

LABELS = ("negative", "neutral", "positive")
MODEL_VERSIONS = ("v1", "v2")
BUCKETS = 8192  # hashed vocabulary size

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


def _bucket(word: str) -> int:
    """A stable hash (Python's hash() changes between processes): the same word, the same bucket, anywhere."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % BUCKETS


def encode(text: str) -> list[int]:
    """Bucket ids of the words of one text (bucket 0 for a text without words)."""
    return [_bucket(w) for w in _WORD.findall(text.lower())] or [0]


def sample_texts(count: int, seed: int = 0) -> list[str]:
    """Short review-like texts for the client, the load test and the agreement check."""
    rng = random.Random(seed)
    words = ("great fast broken slow love hate fine okay terrible excellent refund works again never always "
             "battery screen price delivery support quality cheap solid awful perfect").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for _ in range(count)]
