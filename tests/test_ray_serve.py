"""ray_serve specifics: one API contract on both servers (same answers, same 4xx for bad input, the server keeps
serving), a clear error for a port in use, a killed Ray Serve replica replaced under load, the config file
deployed with `serve deploy` and upgraded in place."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from helpers import ROOT, Terminal, base_env, last_line, load_script, run
from tools.tour import SIDES
from workshop import serve_client, text_model

SERVER = "ray_serve/{side}/text_classifier_server.py"
LOAD_TEST = "ray_serve/load_test.py"


# Held-out reviews (not in workshop/labelled_reviews.csv, which the heads are fitted on), each clearly one label
REVIEWS = [
    ("negative", "Broke the first time I used it. Total junk, I want my money back."),
    ("negative", "Horrible customer service and a product that does not work."),
    ("negative", "The headphones stopped charging after three days. Very disappointed."),
    ("negative", "Awful taste, I threw the rest of the bottle away."),
    ("negative", "The worst hotel we have ever stayed in: filthy and loud."),
    ("negative", "This laptop is painfully slow and the keyboard is already failing."),
    ("negative", "Do not buy. It fell apart within a week."),
    ("negative", "A boring, badly acted film. I walked out."),
    ("neutral", "It is an average blender. It blends."),
    ("neutral", "The shirt is fine, the size is as expected."),
    ("neutral", "Okay product, nothing to complain about and nothing to praise."),
    ("neutral", "It arrived on the stated date. It does what it says."),
    ("neutral", "An ordinary umbrella, neither good nor bad."),
    ("neutral", "Decent enough for the price, a standard charger."),
    ("neutral", "The novel was alright, a typical holiday read."),
    ("neutral", "Acceptable quality. Not remarkable in any way."),
    ("positive", "Amazing sound and the battery lasts forever. I love these headphones."),
    ("positive", "Perfect! Exactly what I needed and it arrived a day early."),
    ("positive", "The staff were wonderful and the food was delicious."),
    ("positive", "Excellent camera, sharp photos even at night. Highly recommended."),
    ("positive", "A beautiful, touching film with brilliant performances."),
    ("positive", "Super comfortable shoes, I have worn them every day for a month."),
    ("positive", "Fantastic value, it works flawlessly. Five stars."),
    ("positive", "Setup was effortless and the app is a joy to use."),
]
MIN_ACCURACY = 0.9
TOLERANCE = tomllib.loads((ROOT / "ray_serve" / "pairs.toml").read_text())["text_classifier_server"]["agree"]["abs_tol"]


def accuracy(predictions) -> float:
    labels = [p["label"] if isinstance(p, dict) else p.label for p in predictions]
    return sum(label == gold for label, (gold, _) in zip(labels, REVIEWS, strict=True)) / len(REVIEWS)


def test_held_out_reviews_are_not_training_examples():
    texts, _ = text_model.read_examples()
    assert len(texts) >= 30 and not {t.lower() for t in texts} & {t.lower() for _, t in REVIEWS}
    assert {label for label, _ in REVIEWS} == set(text_model.LABELS)


def test_model_is_deterministic_and_both_versions_are_right():
    texts = [t for _, t in REVIEWS]
    v1 = text_model.build_model("v1")
    again = text_model.TextClassifier("v1", encoder=v1.encoder)  # the head is fitted again, the same way
    v2 = text_model.TextClassifier("v2", encoder=v1.encoder)
    assert (again.weights == v1.weights).all() and (again.bias == v1.bias).all()
    a, c = v1.predict(texts), v2.predict(texts)
    assert a == v1.predict(texts)
    assert [p.scores for p in a] != [p.scores for p in c]
    assert all(abs(sum(p.scores) - 1) < 1e-4 and p.label in text_model.LABELS for p in a + c)
    assert accuracy(a) >= MIN_ACCURACY and accuracy(c) >= MIN_ACCURACY, (accuracy(a), accuracy(c))
    # one batched forward pass (padded to the longest text) gives what one pass per text gives
    for model, batched in ((v1, a), (v2, c)):
        single = [model.predict([t])[0] for t in texts[::3]]
        for together, alone in zip(batched[::3], single):
            assert together.label == alone.label
            assert max(abs(x - y) for x, y in zip(together.scores, alone.scores)) < TOLERANCE / 10
    with pytest.raises(ValueError, match="unknown model version"):
        text_model.TextClassifier("v3", encoder=v1.encoder)


def test_sample_texts_are_reviews_and_repeatable():
    texts = text_model.sample_texts(50, seed=1)
    assert texts == text_model.sample_texts(50, seed=1) != text_model.sample_texts(50, seed=2)
    assert all(text.endswith(".") and len(text.split()) >= 3 and len(text) <= text_model.MAX_CHARS for text in texts)


def answers(url: str) -> bool:
    try:
        return serve_client.request(url, timeout=2)[0] == 200
    except OSError:
        return False


CONFIG = ROOT / "ray_serve" / "serve_config.yaml"


def serve_cli(*args, env):
    proc = subprocess.run([str(Path(sys.executable).with_name("serve")), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def wait_for_info(url, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, info = serve_client.request(f"{url}/info", timeout=5)
            if status == 200 and predicate(info):
                return info
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url}/info never satisfied the condition")


@pytest.fixture(scope="class")
def servers(request, tmp_path_factory):
    """Both servers up at once: the baseline as the README starts it with two uvicorn worker processes (its app
    factory in each; stopped with Ctrl-C at the end; one process is what the pair tests run), the Ray version
    deployed from ray_serve/serve_config.yaml with `serve deploy` on the two-node test cluster."""
    cluster = request.getfixturevalue("ray_cluster")
    folder = tmp_path_factory.mktemp("servers")
    port = serve_client.free_port()
    baseline = Terminal([sys.executable, "-m", "uvicorn", "--app-dir", "ray_serve/baseline", "--factory",
                         "text_classifier_server:build_app", "--port", str(port), "--workers", "2"],
                        folder / "baseline.log", {**base_env(), "OMP_NUM_THREADS": "1"}, f"http://127.0.0.1:{port}")
    baseline.wait_until(lambda: answers(f"{baseline.url}/healthz"), timeout=150)
    env = cluster.env(base_env())
    port = serve_client.free_port()
    config = yaml.safe_load(CONFIG.read_text())
    config["http_options"]["port"] = port
    (folder / "v1.yaml").write_text(yaml.safe_dump(config))
    ray_side = SimpleNamespace(url=f"http://127.0.0.1:{port}", dashboard=cluster.dashboard_url, env=env,
                               config=config)
    try:
        serve_cli("deploy", str(folder / "v1.yaml"), "-a", cluster.dashboard_url, env=env)
        serve_client.wait_until_healthy(ray_side.url, timeout=180)
        yield {"baseline": baseline, "ray_version": ray_side}
    finally:
        serve_cli("shutdown", "-y", "-a", cluster.dashboard_url, env=env)
        code = baseline.stop()
    assert code == 0, f"the baseline did not stop cleanly on Ctrl-C: {code}"


BAD_REQUESTS = {
    "malformed JSON": (b'{"texts": ["ok"', 422),
    "missing field": (json.dumps({"text": ["ok"]}).encode(), 422),
    "wrong type": (json.dumps({"texts": "not a list"}).encode(), 422),
    "wrong item type": (json.dumps({"texts": [{"a": 1}]}).encode(), 422),
    "unknown model": (json.dumps({"texts": ["ok"], "model": "v9"}).encode(), 422),
    "empty batch": (json.dumps({"texts": []}).encode(), 422),
    "too many texts": (json.dumps({"texts": ["ok"] * (text_model.MAX_TEXTS + 1)}).encode(), 413),
    "text too long": (json.dumps({"texts": ["a" * (text_model.MAX_CHARS + 1)]}).encode(), 413),
    "empty body": (b"", 422),
    "a 20 MB body": (json.dumps({"texts": ["a" * 20_000_000]}).encode(), 413),  # refused before it is parsed
}


def test_a_body_over_the_limit_is_refused_before_it_is_read():
    """The middleware both servers install: 413 by Content-Length, and for a chunked body (no Content-Length)
    as soon as it passes the limit; the route never runs; a body within the limit is served."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app, calls = FastAPI(), []
    app.add_middleware(text_model.BodySizeLimit)

    @app.post("/predict")
    def predict(request: text_model.PredictRequest) -> dict:
        calls.append(len(request.texts))
        return {"texts": len(request.texts)}

    client = TestClient(app)
    big = json.dumps({"texts": ["a" * 20_000_000]}).encode()
    response = client.post("/predict", content=big)
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]
    response = client.post("/predict", content=(big[i:i + 65536] for i in range(0, len(big), 65536)))  # chunked
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]
    assert calls == []
    assert client.post("/predict", json={"texts": ["ok"] * text_model.MAX_TEXTS}).status_code == 200
    assert calls == [text_model.MAX_TEXTS]


def test_disagreement_is_detected():
    disagreements = load_script(LOAD_TEST).disagreements
    a = [{"label": "positive", "scores": [0.1, 0.2, 0.7]}, {"label": "neutral", "scores": [0.2, 0.5, 0.3]}]
    assert disagreements(a, [dict(p) for p in a], 1e-3) == []
    b = [a[0], {"label": "neutral", "scores": [0.2, 0.498, 0.302]}]
    assert len(disagreements(a, b, 1e-3)) == 1 and disagreements(a, b, 1e-2) == []
    assert disagreements(a, a[:1], 1e-3) == ["2 vs 1 predictions"]


def test_load_test_without_a_server_fails_clearly():
    proc = run(LOAD_TEST, "--url", f"http://127.0.0.1:{serve_client.free_port()}", "--wait", "1", timeout=60)
    assert proc.returncode == 1
    assert last_line(proc.stderr).startswith("error: no server answers at")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("side", SIDES)
def test_port_in_use_is_one_clear_line(side):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = run(SERVER.format(side=side), "--port", port, "--smoke-test", timeout=100)
    assert proc.returncode == 1
    assert last_line(proc.stderr) == f"error: port {port} is already in use on 127.0.0.1; " \
                                     "stop the program using it or pass --port"
    assert "Traceback" not in proc.stderr


@pytest.mark.ray_cluster
class TestBothServersRunning:
    """Both servers up at once (started once for this class); each test leaves them as it found them."""

    @pytest.mark.timeout(240)
    def test_bad_input_is_a_4xx_with_a_message_on_both_servers_which_keep_serving(self, servers):
        for side, server in servers.items():
            for name, (raw, expected) in BAD_REQUESTS.items():
                status, body = serve_client.request(f"{server.url}/predict", "POST", raw=raw)
                assert status == expected, f"{side} {name}: {status} {body}"
                assert isinstance(body, dict) and body.get("detail"), f"{side} {name}: no message: {body}"
            status, body = serve_client.request(f"{server.url}/predict", "POST", raw=b'{"texts": ["ok"]}',
                                                content_type="text/plain")
            assert status == 422 and body.get("detail"), f"{side} wrong content type: {status} {body}"
            status, body = serve_client.request(f"{server.url}/predict", "GET")
            assert status == 405 and body.get("detail"), f"{side} wrong method: {status} {body}"
            good = serve_client.predict(server.url, ["Works great, I love it.", "Awful, it arrived broken."])
            assert [p["label"] for p in good["predictions"]] == ["positive", "negative"]  # still serving
            assert good["model"] == "v1"
            assert serve_client.predict(server.url, ["works great"], model="v2")["model"] == "v2"

    @pytest.mark.timeout(240)
    def test_both_servers_label_held_out_reviews_right_and_alike(self, servers):
        texts = [t for _, t in REVIEWS]
        answers = {}
        for side, server in servers.items():
            for version in text_model.MODEL_VERSIONS:
                predictions = []
                for start in range(0, len(texts), 5):  # several requests of several texts, through HTTP
                    answer = serve_client.predict(server.url, texts[start:start + 5], model=version)
                    assert answer["model"] == version
                    predictions += answer["predictions"]
                assert accuracy(predictions) >= MIN_ACCURACY, (side, version, accuracy(predictions))
                answers[side, version] = predictions
        problems = load_script(LOAD_TEST).disagreements
        for version in text_model.MODEL_VERSIONS:
            assert problems(answers["baseline", version], answers["ray_version", version], TOLERANCE) == []
        assert answers["baseline", "v1"] != answers["baseline", "v2"]

    @pytest.mark.timeout(240)
    def test_load_test_checks_that_both_servers_agree(self, servers, tmp_path):
        report_path = tmp_path / "report.json"
        proc = run(LOAD_TEST, "--url", servers["ray_version"].url, "--compare-with", servers["baseline"].url,
                   "--requests", "40", "--concurrency", "8", "--texts-per-request", "2", "--json", report_path,
                   timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "Agreement:" in proc.stdout and "p99" in proc.stdout
        report = json.loads(report_path.read_text())
        assert report["agreement"]["problems"] == [] and report["agreement"]["texts"] == 16
        assert report["ok"] == 40 and report["failed"] == 0 and report["throughput_rps"] > 0
        assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]

    @pytest.mark.timeout(300)
    def test_killed_replica_is_replaced_under_load(self, servers, tmp_path):
        url = servers["ray_version"].url
        old_pid = serve_client.request(f"{url}/info")[1]["pid"]
        report_path = tmp_path / "report.json"
        load = subprocess.Popen(
            [sys.executable, LOAD_TEST, "--url", url, "--duration", "10", "--concurrency", "4", "--check-texts", "0",
             "--timeout", "150", "--json", str(report_path)],
            cwd=ROOT, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines = []  # kill once the load test says that the server has answered and requests are in flight
        for line in load.stdout:
            lines.append(line)
            if line.startswith("Load under way:"):
                break
        assert lines and lines[-1].startswith("Load under way:"), "".join(lines)[-3000:]
        in_flight = int(lines[-1].split(", ")[1].split()[0])
        os.kill(old_pid, signal.SIGKILL)  # the model replica's process dies, as in an out-of-memory kill
        # requests sent while no replica is up wait for the new one (it loads MiniLM: 10-40 s on 2 busy cores)
        out, _ = load.communicate(timeout=200)
        out = "".join(lines) + out
        assert load.returncode == 0, out[-3000:]
        report = json.loads(report_path.read_text())
        print(out)
        assert in_flight > 0, out
        # A request caught on the dead replica gets 503, never a 500 or a dropped connection; the others wait
        # for its successor. (Here none failed in 3 runs of 3: the requests in flight were answered by the new
        # replica, 12-15 s later.) Either way the load goes on after the kill and is answered.
        assert set(report["errors_by_status"]) <= {"503"}, report
        assert report["ok"] > 10 and report["requests"] > 10 + in_flight, report
        assert report["failed"] == 0 or (report["recovery_seconds"] is not None
                                         and report["ok_after_last_failure"] > 0 and "recovery" in out), report
        wait_for_info(url, lambda info: info["pid"] != old_pid, timeout=90)  # Serve replaced the killed replica
        assert serve_client.predict(url, ["Works great, I love it."])["predictions"][0]["label"] == "positive"


    @pytest.mark.timeout(240)
    def test_in_place_upgrade_through_the_config_file(self, servers, tmp_path):
        ray_side = servers["ray_version"]
        before = wait_for_info(ray_side.url, lambda info: info["default_model"] == "v1")
        config = copy.deepcopy(ray_side.config)
        config["applications"][0]["deployments"][2]["user_config"]["default_model"] = "v2"
        v2, v1 = tmp_path / "v2.yaml", tmp_path / "v1.yaml"
        v2.write_text(yaml.safe_dump(config))
        v1.write_text(yaml.safe_dump(ray_side.config))
        serve_cli("deploy", str(v2), "-a", ray_side.dashboard, env=ray_side.env)
        try:
            after = wait_for_info(ray_side.url, lambda info: info["default_model"] == "v2", timeout=60)
            assert after["api_pid"] == before["api_pid"], "a user_config change should not restart the replica"
            assert after["pid"] != before["pid"], "v2 is served by its own deployment"
            assert serve_client.predict(ray_side.url, ["works great"])["model"] == "v2"
        finally:  # back to v1, in place, for the class's other tests (they run in any order)
            serve_cli("deploy", str(v1), "-a", ray_side.dashboard, env=ray_side.env)
            wait_for_info(ray_side.url, lambda info: info["default_model"] == "v1", timeout=60)

CONFIG = ROOT / "ray_serve" / "serve_config.yaml"


def test_config_file_names_importable_targets():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["proxy_location"] == "HeadOnly" and config["http_options"]["host"] == "127.0.0.1"
    (app,) = config["applications"]
    module_name, attr = app["import_path"].split(":")
    assert module_name == "ray_serve.ray_version.text_classifier_server"
    script = load_script(module_name.replace(".", "/") + ".py")
    from ray import serve

    assert isinstance(getattr(script, attr), serve.Application)
    names = {d["name"] for d in app["deployments"]}
    assert names == {"ClassifierV1", "ClassifierV2", "TextClassifierAPI"}
    for deployment in app["deployments"]:
        if deployment["name"].startswith("Classifier"):
            scaling = deployment["autoscaling_config"]
            assert scaling["min_replicas"] <= scaling["max_replicas"] and scaling["target_ongoing_requests"] > 0
            assert deployment["max_ongoing_requests"] > 32, "must exceed @serve.batch's max_batch_size"
    assert app["deployments"][2]["user_config"] == {"default_model": "v1"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("side", SIDES)
def test_a_server_copied_without_its_client_says_so_in_one_line_before_it_starts(side, tmp_path):
    """A learner copies the server and workshop/ into a project of their own, but not load_test.py: the
    self-test (--smoke-test) says what is missing in one line, before any server or Ray starts."""
    import shutil

    shutil.copy2(ROOT / SERVER.format(side=side), tmp_path / "server.py")
    shutil.copytree(ROOT / "workshop", tmp_path / "workshop", ignore=shutil.ignore_patterns("__pycache__"))
    proc = run(tmp_path / "server.py", "--smoke-test", "--output", tmp_path / "out", cwd=tmp_path, timeout=100)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "the self-test needs load_test.py next to this script" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr and "Started a local Ray" not in proc.stderr
    assert not (tmp_path / "out" / "result.json").exists()
