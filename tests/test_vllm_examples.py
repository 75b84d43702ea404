"""vllm_examples specifics. The generic pair tests already run both pairs at smoke size (the Ray sides on the
two-node cluster, with vLLM on CPU): the batch pair must give token-identical completions of the requested
length, and both servers must pass the shared client's API check with the same statuses and greedy texts
(good requests, unknown model 404, max_tokens too large 400, malformed messages 400, then a good one again).
Here: that the default model (the packaged SmolLM2-135M-Instruct, offline) really answers, on both batch sides
and through the client; and what those runs cannot show, starting one more vLLM engine only (each costs half a
minute or more): the baseline server's OpenAI error bodies and streaming format in detail, the client's modes,
the prompt file's bad input, and the one-line refusals (bad model, vLLM missing, no GPU, no server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from transformers import GenerationConfig
from helpers import ROOT, base_env, last_line, load_script, read_result, run, Terminal
from tools import tour
from tools.tour import SIDES

from workshop import llm_workload, models, serve_client

BATCH = "vllm_examples/{side}/batch_generate.py"
SERVER = "vllm_examples/{side}/openai_server.py"
CLIENT = "vllm_examples/openai_client.py"
MODEL = models.LLM_NAME  # the name both servers list on /v1/models for the packaged model
FRANCE = "What is the capital of France? Answer in one word."


def without_vllm(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import vllm` fails, as on a machine without it (macOS, Windows)."""
    folder = tmp_path / "no_vllm"
    folder.mkdir()
    # with sys.modules["vllm"] = None, `import vllm` raises ImportError
    (folder / "sitecustomize.py").write_text("import sys\nsys.modules['vllm'] = None\n")
    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return env


@pytest.mark.timeout(360)
def test_without_vllm_the_ray_scripts_say_so_and_the_baseline_runs(tmp_path):
    env = without_vllm(tmp_path)
    for script in (BATCH.format(side="ray_version"), SERVER.format(side="ray_version")):
        proc = run(script, "--smoke-test", "--output", tmp_path / "ray", env=env, timeout=120)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert last_line(proc.stderr).startswith("error: vLLM is not installed")
        assert "requirements-vllm.txt" in last_line(proc.stderr)
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "ray" / "result.json").exists()

    # the baseline needs no vLLM; here it also reads a prompt file (--prompts), with the default model
    texts = [FRANCE, "Écris un haïku sur un renard.", "What is 2 + 2? Answer with a number only.", "Hi"]
    out = tmp_path / "baseline"
    proc = run(BATCH.format(side="baseline"), "--smoke-test", "--prompts", prompt_file(tmp_path, texts),
               "--max-tokens", "12", "--output", out, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_parquet(out / "completions.parquet")
    assert list(rows["id"]) == [0, 1, 2, 3] and list(rows["prompt"]) == texts
    assert all(len(ids) == 12 for ids in rows["token_ids"]) and (rows["num_tokens"] == 12).all()
    assert "Paris" in rows["completion"][0], rows["completion"][0]  # a real model: a real answer
    assert "4" in rows["completion"][2], rows["completion"][2]
    answer = read_result(out)["answer"]
    assert answer["prompts"] == 4 and answer["max_tokens"] == 12 and answer["with_requested_length"] == 4
    assert len({tuple(ids) for ids in answer["token_ids"]}) == 4  # four prompts, four different completions


def prompt_file(folder: Path, texts: list[str]) -> Path:
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts) + "\n")
    return path


@pytest.mark.ray_cluster
@pytest.mark.timeout(900)
@pytest.mark.slow
def test_ray_batch_job_answers_with_the_packaged_model(smoke_run):
    """The Ray batch job's smoke run (shared with the pair test, --stop-at-eos): real answers, the short ones
    ending with the model's end-of-sequence token, none longer than --max-tokens."""
    [pair] = [p for p in tour.discover(["vllm_examples"]) if p.name == "batch_generate"]
    run_ = smoke_run(pair, "ray_version")
    result = run_.result
    rows = pd.read_parquet(run_.output / "completions").sort_values("id")  # the folder of Parquet files Ray Data wrote
    max_tokens = result["answer"]["max_tokens"]
    assert list(rows["id"]) == list(range(16)) and (rows["num_tokens"] <= max_tokens).all()
    eos = GenerationConfig.from_pretrained(models.resolve_llm(None)).eos_token_id
    ended = [list(ids) for ids in rows["token_ids"] if len(ids) < max_tokens]
    assert ended and all(ids[-1] == eos for ids in ended), ended  # answered in a few words, then ended
    assert result["answer"]["with_requested_length"] == len(rows) - len(ended)
    ireland = rows[rows["prompt"].str.contains("capital of Ireland")]["completion"].item()
    assert "Dublin" in ireland, ireland  # a real model: a real answer


BAD_MODELS = {  # the extra arguments, and the start of the one line each must print
    "no such folder": (["--model", "{tmp}/no_such_model"],
                       "error: --model {tmp}/no_such_model: not a model folder (no such folder)"),
    "not a model folder": (["--model", "{tmp}"], "error: --model {tmp}: not a model folder (no config.json"),
    "longer than the model's context": (["--max-model-len", "9000"], "error: --max-model-len 9000 is longer "
                                        "than the context of model SmolLM2-135M-Instruct (8192 tokens"),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("script", [BATCH, SERVER], ids=["batch_generate", "openai_server"])
@pytest.mark.parametrize("side", SIDES)
def test_a_bad_model_is_one_line_before_anything_loads(script, side, tmp_path):
    """A missing folder, a folder that is no model, a --max-model-len the model cannot take: one line, exit 1,
    before a model loads or an engine starts (Ray Serve would otherwise restart a failing replica forever)."""
    (tmp_path / "notes.txt").write_text("not a model\n")
    procs = {}
    for name, (extra, _) in BAD_MODELS.items():  # the three at once: each is mostly interpreter start-up
        args = [a.format(tmp=tmp_path) for a in extra]
        procs[name] = subprocess.Popen(
            [sys.executable, script.format(side=side), "--smoke-test", *args, "--output", tmp_path / "out"],
            cwd=ROOT, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, (_, expected) in BAD_MODELS.items():
        stdout, stderr = procs[name].communicate(timeout=200)
        assert procs[name].returncode == 1, f"{name}: {stderr[-2000:]}"
        assert last_line(stderr).startswith(expected.format(tmp=tmp_path)), f"{name}: {stderr[-2000:]}"
        assert "Traceback" not in stderr and "Loading" not in stdout, name
    assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("side", SIDES)
def test_empty_prompt_file_is_one_clear_line(side, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    proc = run(BATCH.format(side=side), "--smoke-test", "--prompts", empty, "--output", tmp_path / "out",
               timeout=200)
    assert proc.returncode == 1
    assert last_line(proc.stderr) == (f"error: prompt file {empty} has no prompts; add lines like "
                                      '{"prompt": "Hello"} or leave out --prompts')
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "result.json").exists()


def test_prompt_file_errors_name_the_file_and_line(tmp_path, capsys):
    cases = {
        "missing.jsonl": None,
        "not_json.jsonl": '{"prompt": "ok"}\nnot json\n',
        "no_prompt.jsonl": '{"text": "a prompt under the wrong key"}\n',
        "blank_prompt.jsonl": '{"prompt": "   "}\n',
    }
    expected = {
        "missing.jsonl": "not found",
        "not_json.jsonl": ":2: not a JSON object",
        "no_prompt.jsonl": ':1: no non-empty "prompt" string',
        "blank_prompt.jsonl": ':1: no non-empty "prompt" string',
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(SystemExit) as exit_info:
            llm_workload.read_prompt_file(path)
        assert exit_info.value.code == 1
        message = capsys.readouterr().err.strip()
        assert message.startswith(f"error: prompt file {path}" if text is None else f"error: {path}")
        assert expected[name] in message


def test_prompts_are_a_fixed_mix_of_short_and_long_answers():
    rows = llm_workload.make_prompts(64, seed=3)
    assert rows == llm_workload.make_prompts(64, seed=3) != llm_workload.make_prompts(64, seed=4)
    assert [r["id"] for r in rows] == list(range(64))
    texts = [r["prompt"] for r in rows]
    kinds = {  # one-word answers, short lists, paragraphs: what a real batch job mixes
        "capital": "What is the capital of", "arithmetic": "Answer with a number only.",
        "yes/no": "Answer yes or no.", "list": "List three", "paragraph": "short paragraph about",
    }
    for kind, marker in kinds.items():
        assert any(marker in t for t in texts), kind
    assert len(set(texts)) > 32  # varied, not a handful of prompts repeated


def test_the_model_context_is_checked_against_max_model_len(tmp_path, capsys):
    default = models.resolve_llm(None)
    assert llm_workload.model_context(default) == 8192  # SmolLM2's max_position_embeddings
    llm_workload.check_context(default, 8192)  # fits: no exit
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"n_positions": 1024, "max_position_embeddings": 512}))
    assert llm_workload.model_context(str(folder)) == 512  # the least of the keys, as vLLM reads them
    with pytest.raises(SystemExit) as exit_info:
        llm_workload.check_context(str(folder), 513)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "error: --max-model-len 513 is longer than the context of model small (512 tokens, "
        "from its config.json); pass --max-model-len 512 or less")


def test_stop_at_eos_keeps_each_answer_up_to_its_end_token():
    baseline = load_script(BATCH.format(side="baseline"))
    # generate() pads a finished row with the pad token (for SmolLM2 the same id as end-of-sequence, 2);
    # vLLM returns a finished answer with its end token and nothing after it: both sides keep the same tokens
    assert baseline.until_end([5, 9, 2, 2, 2], {2}) == [5, 9, 2]
    assert baseline.until_end([5, 9, 7], {2}) == [5, 9, 7]  # forced length: no end token inside
    assert baseline.until_end([2, 2], {2, 7}) == [2]


@pytest.mark.timeout(120)
def test_baseline_use_gpu_without_a_gpu_is_one_clear_line(tmp_path):
    proc = run(BATCH.format(side="baseline"), "--smoke-test", "--use-gpu", "--output", tmp_path, timeout=110)
    assert proc.returncode == 1
    assert last_line(proc.stderr).startswith("error: --use-gpu: PyTorch sees no CUDA GPU")
    assert "Traceback" not in proc.stderr


def test_client_without_a_server_fails_clearly():
    port = serve_client.free_port()
    proc = run(CLIENT, "--base-url", f"http://127.0.0.1:{port}/v1", "--wait", "1", "--check", timeout=60)
    assert proc.returncode == 1
    assert last_line(proc.stderr).startswith(f"error: no answer from http://127.0.0.1:{port}/v1/models")
    assert "Traceback" not in proc.stderr


# ---- the baseline server, started as a person would and stopped with Ctrl-C ----

def start_server(side: str, tmp: Path) -> Terminal:
    """The LLM server as the README starts it (a short context), up once it says so, which it does after one
    completion has gone through the model (the generic pair test runs the client's full --check on it)."""
    port = serve_client.free_port()
    server = Terminal([sys.executable, SERVER.format(side=side), "--max-model-len", "256", "--port", str(port),
                       "--output", str(tmp)], tmp / "server.log", base_env(), f"http://127.0.0.1:{port}/v1")
    server.wait_until(lambda: server.printed("Ctrl-C stops it"), timeout=180)
    return server


@pytest.fixture(scope="module")
def baseline_server(tmp_path_factory):
    server = start_server("baseline", tmp_path_factory.mktemp("baseline_server"))
    try:
        yield server
    finally:
        server.stop()


def post(server: Terminal, route: str, body=None, raw: bytes | None = None):
    return serve_client.request(f"{server.url}/{route}", "POST", body, raw=raw, timeout=180)


def chat(**fields) -> dict:
    messages = [{"role": "user", "content": FRANCE}]
    return {"model": MODEL, "messages": messages, **fields}


@pytest.mark.timeout(360)
def test_baseline_server_answers_bad_requests_with_openai_errors_and_keeps_serving(baseline_server):
    completion = {"model": MODEL, "prompt": "x", "max_tokens": -1}
    bad = [  # name, route, body, expected status, expected "param"
        ("unknown model", "chat/completions", chat(model="gpt-17"), 404, "model"),
        ("max_tokens above the context", "chat/completions", chat(max_tokens=10**6), 400, "max_tokens"),
        ("messages not a list", "chat/completions", chat(messages="hello"), 400, "messages"),
        ("empty messages", "chat/completions", chat(messages=[]), 400, "messages"),
        ("message without a role", "chat/completions", chat(messages=[{"content": "hi"}]), 400,
         "messages.0.role"),
        ("negative max_tokens", "completions", completion, 400, "max_tokens"),
        ("not JSON", "chat/completions", b"{not json", 400, None),
        ("a body over 1 MiB", "chat/completions", chat(messages=[{"role": "user", "content": "x " * 600_000}]), 413,
         None),
    ]
    for name, route, body, want_status, want_param in bad:
        if isinstance(body, bytes):
            status, answer = post(baseline_server, route, raw=body)
        else:
            status, answer = post(baseline_server, route, body)
        assert status == want_status, f"{name}: {status} {answer}"
        error = answer["error"]  # the OpenAI envelope: {"error": {"message", "type", "param", "code"}}
        assert error["message"] and error["code"] == want_status, name
        assert error["type"] == ("NotFoundError" if want_status == 404 else "BadRequestError"), name
        if want_param:
            assert error["param"] == want_param, f"{name}: {error}"
        if name == "max_tokens above the context":
            assert "maximum context length is 256 tokens" in error["message"]

    status, body = post(baseline_server, "chat/completions", chat(max_tokens=4, min_tokens=4, temperature=0))
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["usage"]["completion_tokens"] == 4 and body["choices"][0]["finish_reason"] == "length"
    status, again = post(baseline_server, "chat/completions", chat(max_tokens=4, min_tokens=4, temperature=0))
    assert status == 200, again
    assert again["choices"][0]["message"]["content"] == body["choices"][0]["message"]["content"]  # greedy

    status, body = post(baseline_server, "completions", {"model": MODEL, "prompt": "The capital of France"})
    assert status == 200 and body["object"] == "text_completion"
    assert 1 <= body["usage"]["completion_tokens"] <= 16  # OpenAI's default max_tokens for completions


@pytest.mark.timeout(120)
def test_baseline_server_streams_server_sent_events(baseline_server):
    body = json.dumps(chat(max_tokens=5, min_tokens=5, temperature=0, stream=True,
                           stream_options={"include_usage": True})).encode()
    request = urllib.request.Request(f"{baseline_server.url}/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.read().decode().splitlines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


@pytest.mark.timeout(120)
def test_a_stream_whose_generate_fails_ends_with_an_error_event(monkeypatch):
    """generate() runs in its own thread while the response streams: if it raises, the client gets an error
    event and the end of the stream (it used to wait forever), and the server answers the next request."""
    import argparse

    from fastapi.testclient import TestClient

    server = load_script(SERVER.format(side="baseline"))
    args = argparse.Namespace(max_model_len=256, use_gpu=False, dtype="float32")
    app = server.build_app(models.resolve_llm(None), args)
    working = server.Generator.generate

    def fails_once(self, *a, **k):
        monkeypatch.setattr(server.Generator, "generate", working)
        raise RuntimeError("out of memory (injected by the test)")

    monkeypatch.setattr(server.Generator, "generate", fails_once)
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json=chat(max_tokens=4, stream=True))
        events = [line for line in response.text.splitlines() if line]
        assert events[-1] == "data: [DONE]"
        error = json.loads(events[-2][len("data: "):])["error"]
        assert error["code"] == 500 and "out of memory" in error["message"]
        again = client.post("/v1/chat/completions", json=chat(max_tokens=4, min_tokens=4, temperature=0))
        assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] == 4


@pytest.mark.timeout(180)
def test_client_chat_and_load_modes(baseline_server, tmp_path):
    url = baseline_server.url
    proc = run(CLIENT, "--base-url", url, "--max-tokens", "12", FRANCE, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"[{MODEL}] ") and "Paris" in proc.stdout, proc.stdout  # a real answer

    report_path = tmp_path / "load.json"
    proc = run(CLIENT, "--base-url", url, "--load", "--requests", "6", "--concurrency", "3",
               "--max-tokens", "5", "--json", report_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "time to first token p50 / p99" in proc.stdout and "output tokens/s" in proc.stdout
    load = json.loads(report_path.read_text())["load"]
    assert load["ok"] == 6 and load["failed"] == 0 and load["output_tokens"] == 30
    assert len(load["answers"]) == 6 and all(isinstance(text, str) and text for text in load["answers"])
    assert 0 < load["ttft_p50_ms"] <= load["latency_p50_ms"] <= load["latency_p99_ms"]
    assert load["output_tokens_per_s"] > 0


@pytest.mark.timeout(240)
def test_ctrl_c_stops_the_baseline_server_cleanly(tmp_path):
    server = start_server("baseline", tmp_path)  # its own: the module's server serves the other tests in any order
    assert server.stop() == 0
    log = server.log_path.read_text()
    assert "Ctrl-C stops it" in log and log.rstrip().endswith("Shut down")
    assert "Traceback" not in log
