"""vllm_examples specifics. The generic pair tests already run both pairs at smoke size (the Ray sides on the
two-node cluster, with vLLM on CPU): the batch pair must give token-identical completions of the requested
length, and both servers must pass the shared client's API check with the same statuses (good requests,
unknown model 404, max_tokens too large 400, malformed messages 400, then a good one again). Here: what those
runs cannot show, without starting another vLLM engine (each costs half a minute or more):
the baseline server's OpenAI error bodies and streaming format in detail, the client's modes, the prompt
file's bad input, and the one-line refusals (vLLM missing, no GPU, no server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, base_env, last_line, run

from workshop import llm_workload, serve_client

BATCH = "vllm_examples/{side}/batch_generate.py"
SERVER = "vllm_examples/{side}/openai_server.py"
CLIENT = "vllm_examples/openai_client.py"
SIDES = ("baseline", "ray_version")


def without_vllm(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import vllm` fails, as on a machine without it (macOS, Windows)."""
    folder = tmp_path / "no_vllm"
    folder.mkdir()
    # with sys.modules["vllm"] = None, `import vllm` raises ImportError
    (folder / "sitecustomize.py").write_text("import sys\nsys.modules['vllm'] = None\n")
    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return env


@pytest.mark.timeout(180)
def test_without_vllm_the_ray_scripts_say_so_and_the_baseline_runs(tmp_path):
    env = without_vllm(tmp_path)
    for script in (BATCH.format(side="ray_version"), SERVER.format(side="ray_version")):
        proc = run(script, "--smoke-test", "--output", tmp_path / "ray", env=env, timeout=120)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert last_line(proc.stderr).startswith("error: vLLM is not installed")
        assert "requirements-vllm.txt" in last_line(proc.stderr)
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "ray" / "result.json").exists()

    # the baseline needs no vLLM; here it also reads a prompt file given with --prompts
    prompts = tmp_path / "prompts.jsonl"
    texts = ["Why is the sky blue?", "Écris un haïku sur un renard.", "2 + 2 =", "Name a colour.", "Hi"]
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts) + "\n")
    out = tmp_path / "baseline"
    proc = run(BATCH.format(side="baseline"), "--smoke-test", "--prompts", prompts, "--max-tokens", "12",
               "--output", out, env=env, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_parquet(out / "completions.parquet")
    assert list(rows["id"]) == [0, 1, 2, 3, 4] and list(rows["prompt"]) == texts
    assert all(len(ids) == 12 for ids in rows["token_ids"]) and (rows["num_tokens"] == 12).all()
    assert all(isinstance(c, str) for c in rows["completion"])
    answer = json.loads((out / "result.json").read_text())["answer"]
    assert answer["prompts"] == 5 and answer["max_tokens"] == 12 and answer["with_requested_length"] == 5
    assert len(set(answer["token_digests"])) == 5  # five different prompts, five different completions


@pytest.mark.timeout(120)
@pytest.mark.parametrize("side", SIDES)
def test_empty_prompt_file_is_one_clear_line(side, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    proc = run(BATCH.format(side=side), "--smoke-test", "--prompts", empty, "--output", tmp_path / "out",
               timeout=100)
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


def test_prompts_and_local_models(tmp_path):
    assert llm_workload.make_prompts(20, seed=3) == llm_workload.make_prompts(20, seed=3)
    assert llm_workload.make_prompts(20, seed=3) != llm_workload.make_prompts(20, seed=4)
    assert llm_workload.resolve_model(None, smoke_test=False, output=tmp_path) == llm_workload.DEFAULT_MODEL
    assert llm_workload.resolve_model("org/some-model", smoke_test=True, output=tmp_path) == "org/some-model"
    tiny = Path(llm_workload.resolve_model(None, smoke_test=True, output=tmp_path))
    assert tiny == tmp_path.resolve() / "tiny-llama" and (tiny / "config.json").exists()
    config = json.loads((tiny / "config.json").read_text())
    # the CPU attention kernels of vLLM accept head_dim 32 (not 4 or 16)
    assert config["hidden_size"] // config["num_attention_heads"] == 32
    assert llm_workload.served_name(str(tiny)) == "tiny-llama"


@pytest.mark.timeout(60)
def test_baseline_use_gpu_without_a_gpu_is_one_clear_line(tmp_path):
    proc = run(BATCH.format(side="baseline"), "--smoke-test", "--use-gpu", "--output", tmp_path, timeout=50)
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

class Server:
    def __init__(self, side: str, tmp: Path) -> None:
        self.port = serve_client.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = tmp / "server.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER.format(side=side), "--model", "tiny-llama", "--max-model-len", "256",
             "--port", str(self.port), "--output", str(tmp)],
            cwd=ROOT, env=base_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        proc = run(CLIENT, "--base-url", self.base_url, "--wait", "120", "--check", timeout=180)
        if proc.returncode != 0:
            self.stop()
            log = self.log_path.read_text()[-3000:]
            raise AssertionError(f"server check failed: {proc.stderr[-1000:]}\n{log}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def baseline_server(tmp_path_factory):
    server = Server("baseline", tmp_path_factory.mktemp("baseline_server"))
    try:
        yield server
    finally:
        server.stop()


def post(server: Server, route: str, body=None, raw: bytes | None = None):
    return serve_client.request(f"{server.base_url}/{route}", "POST", body, raw=raw, timeout=60)


def chat(**fields) -> dict:
    messages = [{"role": "user", "content": "What does the fox eat?"}]
    return {"model": "tiny-llama", "messages": messages, **fields}


@pytest.mark.timeout(240)
def test_baseline_server_answers_bad_requests_with_openai_errors_and_keeps_serving(baseline_server):
    completion = {"model": "tiny-llama", "prompt": "x", "max_tokens": -1}
    bad = [  # name, route, body, expected status, expected "param"
        ("unknown model", "chat/completions", chat(model="gpt-17"), 404, "model"),
        ("max_tokens above the context", "chat/completions", chat(max_tokens=10**6), 400, "max_tokens"),
        ("messages not a list", "chat/completions", chat(messages="hello"), 400, "messages"),
        ("empty messages", "chat/completions", chat(messages=[]), 400, "messages"),
        ("message without a role", "chat/completions", chat(messages=[{"content": "hi"}]), 400,
         "messages.0.role"),
        ("negative max_tokens", "completions", completion, 400, "max_tokens"),
        ("not JSON", "chat/completions", b"{not json", 400, None),
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

    status, body = post(baseline_server, "chat/completions", chat(max_tokens=6, min_tokens=6, temperature=0))
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["model"] == "tiny-llama"
    assert body["usage"]["completion_tokens"] == 6 and body["choices"][0]["finish_reason"] == "length"
    status, again = post(baseline_server, "chat/completions", chat(max_tokens=6, min_tokens=6, temperature=0))
    assert again["choices"][0]["message"]["content"] == body["choices"][0]["message"]["content"]  # greedy

    status, body = post(baseline_server, "completions", {"model": "tiny-llama", "prompt": "The owl"})
    assert status == 200 and body["object"] == "text_completion"
    assert 1 <= body["usage"]["completion_tokens"] <= 16  # OpenAI's default max_tokens for completions


@pytest.mark.timeout(120)
def test_baseline_server_streams_server_sent_events(baseline_server):
    body = json.dumps(chat(max_tokens=5, min_tokens=5, temperature=0, stream=True,
                           stream_options={"include_usage": True})).encode()
    request = urllib.request.Request(f"{baseline_server.base_url}/chat/completions", data=body, method="POST",
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


@pytest.mark.timeout(180)
def test_client_chat_and_load_modes(baseline_server, tmp_path):
    url = baseline_server.base_url
    proc = run(CLIENT, "--base-url", url, "--max-tokens", "6", "Hello there", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("[tiny-llama] ")

    report_path = tmp_path / "load.json"
    proc = run(CLIENT, "--base-url", url, "--load", "--requests", "6", "--concurrency", "3",
               "--max-tokens", "5", "--json", report_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "time to first token p50 / p99" in proc.stdout and "output tokens/s" in proc.stdout
    load = json.loads(report_path.read_text())["load"]
    assert load["ok"] == 6 and load["failed"] == 0 and load["output_tokens"] == 30
    assert 0 < load["ttft_p50_ms"] <= load["latency_p50_ms"] <= load["latency_p99_ms"]
    assert load["output_tokens_per_s"] > 0


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_baseline_server_cleanly(baseline_server):  # last: it stops the module's server
    assert baseline_server.stop() == 0
    log = baseline_server.log_path.read_text()
    assert "Ctrl-C stops it" in log and log.rstrip().endswith("Shut down")
    assert "Traceback" not in log
