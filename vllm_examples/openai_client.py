"""A client for both OpenAI-compatible servers (FastAPI baseline, Ray Serve LLM), with the `openai` package.

It finds the model through GET /v1/models, so the same command works against both servers unchanged:

    python vllm_examples/openai_client.py --base-url http://127.0.0.1:8000/v1 "What is the capital of France?"
    python vllm_examples/openai_client.py --check                  # the API contract, incl. bad requests
    python vllm_examples/openai_client.py --load --concurrency 16 --requests 64 --max-tokens 64

--check sends good and bad requests (unknown model, max_tokens above the context, malformed messages,
sampling values out of range, a body over a megabyte, a role of the caller's own) and exits 1 unless every
answer has the expected status and the server still answers afterwards; it reports the statuses and the
greedy texts of its exact-length requests and of a few answers that end where the model ends them, so that two
servers with one model can be compared.
--load sends --requests streaming chat requests, --concurrency at a time, each asking for exactly --max-tokens
tokens (min_tokens, a vLLM extension both servers accept), and reports output tokens/s, time to first token
and latency percentiles as a table, and (with --json) these and every answer's text as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import openai

from workshop import cli, llm_workload
from workshop.serve_client import percentile

TIMEOUT_S = 600.0  # a load test measures a slow server; it does not give up on it (a one-at-a-time server
# at concurrency 16 makes its last request wait for 15 others)
CHECK_PROMPT = "What is the capital of France? Answer in one word."
NATURAL_PROMPTS = [  # --check: greedy answers at their natural length (up to NATURAL_MAX_TOKENS)
    "What is the capital of Japan? Answer in one word.", "What is 7 + 5? Answer with a number only.",
    "Is the Sun a star? Answer yes or no.", "List three fruits, one per line.",
]
NATURAL_MAX_TOKENS = 32


def make_client(base_url: str) -> openai.OpenAI:
    # No API key is checked by these servers; max_retries=0 so that an error shows up as it happened.
    return openai.OpenAI(base_url=base_url, api_key="not-needed", timeout=TIMEOUT_S, max_retries=0)


def find_model(client: openai.OpenAI) -> str:
    """The first (here: the only) model the server lists."""
    models = client.models.list().data
    if not models:
        raise RuntimeError("GET /v1/models listed no model")
    return models[0].id


def status_of(call) -> tuple[int, object]:
    """(HTTP status, response or error body) of one SDK call; API errors are returned, not raised."""
    try:
        return 200, call()
    except openai.APIStatusError as err:
        return err.status_code, err.body


def error_message(body: object) -> str:
    """The message of an error body. The SDK hands over the "error" object of an OpenAI-style body
    ({"error": {"message": ...}}); Ray Serve LLM 2.60 answers an unknown model with FastAPI's {"detail": ...}.
    """
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or "")
    return ""


def check_server(client: openai.OpenAI, max_tokens: int = 8) -> dict:
    """Good and bad requests, with the status each got. Raises AssertionError on a broken contract."""
    model = find_model(client)
    messages = llm_workload.chat_messages(CHECK_PROMPT)
    exact = {"temperature": 0.0, "max_tokens": max_tokens, "extra_body": {"min_tokens": max_tokens}}
    statuses, tokens, texts, problems = {}, [], {}, []

    def expect(name, wanted, call):
        status, body = status_of(call)
        # where either of two statuses is right (a body over a server's own size limit: 413, or 400 from the
        # context check), the report says which were allowed, so that two servers compare equal
        statuses[name] = "/".join(map(str, sorted(wanted))) if status in wanted and len(wanted) > 1 else status
        if status not in wanted:
            problems.append(f"{name}: HTTP {status} (expected {wanted}): {str(body)[:200]}")
        elif status >= 400 and not error_message(body):
            problems.append(f"{name}: HTTP {status} without an error message: {body!r:.200}")
        return body

    chat = expect("chat", {200}, lambda: client.chat.completions.create(
        model=model, messages=messages, **exact))
    if statuses["chat"] == 200:
        tokens.append(chat.usage.completion_tokens)
        texts["chat"] = chat.choices[0].message.content
        if not isinstance(texts["chat"], str):
            problems.append("chat: no message content")
    completion = expect("completion", {200}, lambda: client.completions.create(
        model=model, prompt="The capital of France is", **exact))
    if statuses["completion"] == 200:
        tokens.append(completion.usage.completion_tokens)
        texts["completion"] = completion.choices[0].text
    stream = expect("stream", {200}, lambda: list(client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}, **exact)))
    if statuses["stream"] == 200:
        usage = [c.usage for c in stream if c.usage]
        tokens.append(usage[-1].completion_tokens if usage else -1)
        texts["stream"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        if not any(c.choices and c.choices[0].finish_reason for c in stream):
            problems.append("stream: no chunk with a finish_reason")
        if texts["stream"] != texts.get("chat"):  # greedy: streamed or not, the same answer
            problems.append(f"stream: {texts['stream']!r} differs from the chat answer {texts.get('chat')!r}")
    expect("unknown_model", {404}, lambda: client.chat.completions.create(
        model="no-such-model", messages=messages, max_tokens=4))
    expect("max_tokens_too_large", {400}, lambda: client.chat.completions.create(
        model=model, messages=messages, max_tokens=10**7))
    expect("malformed_messages", {400}, lambda: client.chat.completions.create(
        model=model, messages=[{"content": "no role"}], max_tokens=4))
    expect("temperature_below_0", {400}, lambda: client.chat.completions.create(
        model=model, messages=messages, max_tokens=4, temperature=-1))
    expect("top_p_0", {400}, lambda: client.chat.completions.create(
        model=model, messages=messages, max_tokens=4, top_p=0))
    expect("body_over_1_mb", {400, 413}, lambda: client.chat.completions.create(
        model=model, messages=llm_workload.chat_messages("x " * 600_000), max_tokens=4))
    expect("role_of_its_own", {200}, lambda: client.chat.completions.create(  # a chat template renders any role
        model=model, messages=[{"role": "robot", "content": "Beep?"}, *messages], max_tokens=2))
    expect("after_errors", {200}, lambda: client.chat.completions.create(
        model=model, messages=messages, **exact))
    natural = []
    for n, prompt in enumerate(NATURAL_PROMPTS):  # the model ends each answer: no min_tokens
        answer = expect(f"natural_{n}", {200}, lambda: client.chat.completions.create(
            model=model, messages=llm_workload.chat_messages(prompt), temperature=0.0,
            max_tokens=NATURAL_MAX_TOKENS))
        if statuses[f"natural_{n}"] == 200:
            choice = answer.choices[0]
            natural.append({"text": choice.message.content, "finish_reason": choice.finish_reason,
                            "completion_tokens": answer.usage.completion_tokens})
    if any(t != max_tokens for t in tokens):
        problems.append(f"completion_tokens {tokens}, expected {max_tokens} each")
    if problems:
        raise AssertionError("; ".join(problems))
    return {"model": model, "prompt": CHECK_PROMPT, "statuses": statuses, "completion_tokens": tokens,
            "texts": texts, "natural": natural}


async def _one_request(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int) -> dict:
    started = time.perf_counter()
    first = None
    tokens, text = 0, ""
    stream = await client.chat.completions.create(
        model=model, messages=llm_workload.chat_messages(prompt), stream=True,
        stream_options={"include_usage": True}, temperature=0.0, max_tokens=max_tokens,
        extra_body={"min_tokens": max_tokens},
    )
    async for chunk in stream:
        # the first chunk comes with the first token (a token may not show as text on its own, e.g. part
        # of a multi-byte character, so this does not wait for text)
        if first is None and chunk.choices:
            first = time.perf_counter() - started
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return {"ttft": first if first is not None else time.perf_counter() - started,
            "latency": time.perf_counter() - started, "tokens": tokens, "text": text}


async def _load(base_url: str, model: str, prompts: list[str], concurrency: int, max_tokens: int):
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", timeout=TIMEOUT_S, max_retries=0)
    queue = iter(range(len(prompts)))
    records, errors = [], {}

    async def worker():
        for i in queue:
            try:
                records.append({"prompt": i, **await _one_request(client, model, prompts[i], max_tokens)})
            except openai.APIStatusError as err:
                errors[str(err.status_code)] = errors.get(str(err.status_code), 0) + 1
            except openai.APIError as err:  # connection errors, timeouts
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    await client.close()
    return records, errors, wall


def run_load(base_url: str, requests: int, concurrency: int, max_tokens: int, seed: int = 0) -> dict:
    """Streaming chat requests at a fixed concurrency; returns tokens/s, TTFT and latency percentiles."""
    model = find_model(make_client(base_url))
    prompts = [row["prompt"] for row in llm_workload.make_prompts(requests, seed)]
    records, errors, wall = asyncio.run(_load(base_url, model, prompts, concurrency, max_tokens))
    tokens = sum(r["tokens"] for r in records)
    ttft = [r["ttft"] for r in records]
    latency = [r["latency"] for r in records]
    answers = {r["prompt"]: r["text"] for r in records}
    return {
        "model": model, "concurrency": concurrency, "requests": requests, "ok": len(records),
        "failed": requests - len(records), "errors_by_status": errors, "max_tokens": max_tokens,
        "seconds": round(wall, 3), "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall, 2) if wall > 0 else 0.0,
        "requests_per_s": round(len(records) / wall, 3) if wall > 0 else 0.0,
        "ttft_p50_ms": round(percentile(ttft, 50) * 1000, 1),
        "ttft_p99_ms": round(percentile(ttft, 99) * 1000, 1),
        "latency_p50_ms": round(percentile(latency, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(latency, 99) * 1000, 1),
        "answers": [answers.get(i) for i in range(requests)],  # each prompt's text, None where it failed
    }


def format_load(report: dict) -> str:
    rows = [
        ("requests (ok / failed)", f"{report['requests']} ({report['ok']} / {report['failed']})"),
        ("concurrency", report["concurrency"]),
        ("output tokens/s", f"{report['output_tokens_per_s']:.1f} ({report['output_tokens']} tokens "
                            f"in {report['seconds']:.1f} s)"),
        ("time to first token p50 / p99", f"{report['ttft_p50_ms']:.0f} / {report['ttft_p99_ms']:.0f} ms"),
        ("latency p50 / p99", f"{report['latency_p50_ms']:.0f} / {report['latency_p99_ms']:.0f} ms"),
        ("errors by status",
         ", ".join(f"{k}: {v}" for k, v in sorted(report["errors_by_status"].items())) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    return "\n".join(lines + [f"| {k.ljust(width)} | {v} |" for k, v in rows])


def wait_for_server(base_url: str, timeout: float) -> None:
    """Poll GET /v1/models until the server answers (a model server can take a minute to load)."""
    client = openai.OpenAI(base_url=base_url, api_key="not-needed", timeout=5, max_retries=0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.models.list().data:
                return
        except openai.APIError:
            pass
        if time.monotonic() > deadline:
            cli.fail(f"no answer from {base_url}/models within {timeout:.0f} s; is the server running?")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("prompt", nargs="?", default="Write a short paragraph about why the sky is blue.",
                        help="the message for one chat request (default mode)")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="the server's OpenAI API root")
    parser.add_argument("--check", action="store_true", help="check the API contract, incl. bad requests")
    parser.add_argument("--load", action="store_true", help="load test: tokens/s, first-token time, latency")
    parser.add_argument("--requests", type=cli.positive_int, default=64, help="load: total requests")
    parser.add_argument("--concurrency", type=cli.positive_int, default=16, help="load: requests in flight")
    parser.add_argument("--max-tokens", type=cli.positive_int, default=64, help="tokens per answer")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="chat: sampling temperature (0: greedy, the same answer every time)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the load test's prompts")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the server to answer")
    parser.add_argument("--json", type=Path, default=None, help="also write the report to this JSON file")
    args = parser.parse_args()

    wait_for_server(args.base_url, args.wait)
    report: dict = {}
    if args.check:
        try:
            report["check"] = check_server(make_client(args.base_url))
        except AssertionError as err:
            cli.fail(f"API check failed against {args.base_url}: {err}")
        print(f"API check passed ({report['check']['model']}): " + ", ".join(
            f"{k} {v}" for k, v in report["check"]["statuses"].items()))
    if args.load:
        report["load"] = run_load(args.base_url, args.requests, args.concurrency, args.max_tokens, args.seed)
        print(format_load(report["load"]))
    if not (args.check or args.load):
        client = make_client(args.base_url)
        model = find_model(client)
        stream = client.chat.completions.create(model=model, messages=llm_workload.chat_messages(args.prompt),
                                                max_tokens=args.max_tokens, temperature=args.temperature,
                                                stream=True)
        print(f"[{model}] ", end="", flush=True)
        for chunk in stream:
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if report.get("load", {}).get("failed"):
        sys.exit(1)


if __name__ == "__main__":
    main()
