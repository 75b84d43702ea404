"""The API contract of the ray_serve servers: routes, request/response schemas, size limits, sample reviews.

Defined once and imported by the FastAPI baseline, the Ray Serve version and the client, so that both
servers expose exactly the same API. No torch here: the client and the load test stay light.
"""

from __future__ import annotations

import json
import random
from typing import Literal, Optional

from pydantic import BaseModel, Field

LABELS = ("negative", "neutral", "positive")
MODEL_VERSIONS = ("v1", "v2")

# Documented limits of the API (both servers): more texts or longer texts are answered with 413.
MAX_TEXTS = 64
MAX_CHARS = 2000
# The largest request body either server reads: MAX_TEXTS texts of MAX_CHARS characters (at most 6 bytes each
# as JSON-escaped UTF-8) and the JSON around them. A larger body gets 413 before it is read or parsed.
MAX_BODY_BYTES = MAX_TEXTS * (MAX_CHARS * 6 + 4) + 1024


# ---- the API contract: routes, schemas, status codes -------------------------------------------------------
# POST /predict   PredictRequest -> 200 PredictResponse
#                 422: malformed JSON, a missing or wrongly typed field, an empty list of texts
#                 413: more than MAX_TEXTS texts, or a text longer than MAX_CHARS characters
#                 413 also for a body over MAX_BODY_BYTES, refused before it is read (BodySizeLimit)
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


class BodySizeLimit:
    """ASGI middleware of both servers: 413 for a request body over max_bytes, decided from its Content-Length
    before the app sees it (the body is read and dropped chunk by chunk, so the client gets the answer), or as
    soon as a body without one (chunked) passes the limit: a 20 MB body is never held in memory or parsed as
    JSON. app.add_middleware(BodySizeLimit); the LLM baseline passes its own limit, hint and OpenAI error body."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, hint: str = "send fewer or shorter texts",
                 error_body=lambda message: {"detail": message}) -> None:
        self.app, self.max_bytes, self.hint, self.error_body = app, max_bytes, hint, error_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            # read the body and drop it, a chunk at a time, so that the client, still sending, gets the 413
            # instead of a reset connection; nothing of it is kept or parsed
            message = {"more_body": True}
            while message.get("more_body") and message.get("type") != "http.disconnect":
                message = await receive()
            return await self._refuse(send, int(length))
        seen, refused = 0, False

        async def counted_receive():
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes and not refused:  # answer now; to the app the client has gone away
                refused = True
                await self._refuse(send, seen)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:  # after the 413, nothing the app sends goes out
                await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, send, size: int) -> None:
        message = f"request body of {size} bytes or more is over the limit of {self.max_bytes} bytes; {self.hint}"
        body = json.dumps(self.error_body(message)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def size_problem(request: PredictRequest) -> Optional[str]:
    """The message for a 413 when the request is over the documented limits, else None."""
    if len(request.texts) > MAX_TEXTS:
        return f"too many texts: {len(request.texts)} > {MAX_TEXTS}; split the request"
    for i, text in enumerate(request.texts):
        if len(text) > MAX_CHARS:
            return f"text {i} has {len(text)} characters > {MAX_CHARS}; shorten it"
    return None


# Sentences of product reviews, by the sentiment they carry: sample_texts joins one to three of one kind
_SENTENCES = {
    "negative": (
        "It broke after a week.", "The battery barely lasts a morning.", "Support never answered my emails.",
        "Delivery took a month and the box was crushed.", "The screen scratches far too easily.",
        "Cheap materials, it feels flimsy.", "I asked for a refund.", "The app keeps crashing.",
        "Worst purchase I have made in years.", "Very disappointed with the quality.",
        "It is slow and noisy.", "Do not waste your money on this.",
    ),
    "neutral": (
        "It does what the description says.", "The price is about average.", "Delivery was on schedule.",
        "It is an ordinary product.", "Nothing special, but it works.", "The colour matches the photo.",
        "It is okay for everyday use.", "I have no strong feelings about it.",
        "The manual is short and plain.", "It is neither good nor bad.",
    ),
    "positive": (
        "Works perfectly, I love it.", "The battery lasts for days.", "Support fixed my issue in minutes.",
        "Fast delivery and great packaging.", "The screen is bright and sharp.", "Excellent build quality.",
        "Worth every penny.", "Setup was quick and painless.", "Best purchase I have made this year.",
        "Highly recommended to everyone.", "It is fast and quiet.", "My family is delighted with it.",
    ),
}


def sample_texts(count: int, seed: int = 0) -> list[str]:
    """Review texts for the client, the load test and the agreement check: the same list for the same seed."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        pool = _SENTENCES[rng.choice(LABELS)]
        texts.append(" ".join(rng.sample(pool, rng.randint(1, 3))))
    return texts
