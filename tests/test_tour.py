"""The tour's own machinery: the agreement rules, pair discovery, and a failing pair not hiding the others.

These run the tour on a small fake repository (plain scripts that write result.json), so a broken
comparison or a swallowed failure shows up here without waiting for real pairs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools import tour


def test_exact_rule_catches_any_difference():
    assert tour.compare({"a": [1.0, 2.0]}, {"a": [1.0, 2.0]}, "exact") == []
    assert tour.compare({"a": [1.0, 2.0]}, {"a": [1.0, 2.0000001]}, "exact")
    assert tour.compare({"a": 1}, {"b": 1}, "exact")
    assert tour.compare([1, 2], [1, 2, 3], "exact")
    assert tour.compare({"n": 1}, {"n": 1.0}, "exact"), "an int and a float are not the same answer"


def test_tolerance_rule():
    rule = {"rel_tol": 1e-6}
    assert tour.compare({"x": 100.0, "tag": "a"}, {"x": 100.00001, "tag": "a"}, rule) == []
    assert tour.compare({"x": 100.0}, {"x": 100.1}, rule)
    assert tour.compare({"x": 1.0, "tag": "a"}, {"x": 1.0, "tag": "b"}, rule), "non-numbers must be equal"


def test_match_fraction_rule():
    rule = {"match_fraction": 0.75, "list": "digests"}
    assert tour.compare({"n": 4, "digests": [1, 2, 3, 4]}, {"n": 4, "digests": [1, 2, 3, 9]}, rule) == []
    assert tour.compare({"n": 4, "digests": [1, 2, 3, 4]}, {"n": 4, "digests": [1, 2, 8, 9]}, rule)
    assert tour.compare({"n": 4, "digests": [1, 2, 3, 4]}, {"n": 5, "digests": [1, 2, 3, 4]}, rule), "rest exact"
    assert tour.compare({"n": 4, "digests": [1, 2]}, {"n": 4, "digests": [1, 2, 3]}, rule)
    assert tour.compare({"n": 4, "digests": []}, {"n": 4, "digests": []}, rule)


def test_metric_rule_with_exact_keys():
    rule = {"metric": "accuracy", "max_diff": 0.02, "exact": ["epochs"]}
    assert tour.compare({"accuracy": 0.90, "epochs": 6, "loss": 1.0}, {"accuracy": 0.91, "epochs": 6, "loss": 9.0},
                        rule) == []
    assert tour.compare({"accuracy": 0.90, "epochs": 6}, {"accuracy": 0.90, "epochs": 5}, rule), "fewer epochs"
    assert tour.compare({"accuracy": 0.90, "epochs": 6}, {"accuracy": 0.90}, rule), "an exact key missing"


def test_metric_rule():
    rule = {"metric": "accuracy", "max_diff": 0.02}
    assert tour.compare({"accuracy": 0.90, "loss": 1.0}, {"accuracy": 0.91, "loss": 9.0}, rule) == []
    assert tour.compare({"accuracy": 0.90}, {"accuracy": 0.93}, rule)
    assert tour.compare({"accuracy": 0.90}, {}, rule)
    assert tour.compare({"accuracy": 0.90, "loss": 1.0}, {"accuracy": 0.90}, rule), "a key on one side only"


SCRIPT = """
import argparse, json, pathlib, sys
p = argparse.ArgumentParser()
p.add_argument("--smoke-test", action="store_true")
p.add_argument("--output", type=pathlib.Path)
a = p.parse_args()
{body}
a.output.mkdir(parents=True, exist_ok=True)
(a.output / "result.json").write_text(json.dumps({{"seconds": 0.5, "answer": {answer}}}))
"""


def make_fake_repo(root, pairs):
    """pairs: name -> (baseline body, baseline answer, ray body, ray answer)."""
    module = root / "ray_core"
    for side in tour.SIDES:
        (module / side).mkdir(parents=True)
    toml = []
    for name, (b_body, b_answer, r_body, r_answer) in pairs.items():
        (module / "baseline" / f"{name}.py").write_text(SCRIPT.format(body=b_body, answer=b_answer))
        (module / "ray_version" / f"{name}.py").write_text(SCRIPT.format(body=r_body, answer=r_answer))
        toml.append(f'[{name}]\nagree = "exact"\nsmoke = ["--smoke-test"]\nbench = []\n')
    (module / "pairs.toml").write_text("\n".join(toml))
    return root


def test_discover_finds_the_real_pairs():
    names = {(p.module, p.name) for p in tour.discover()}
    assert ("ray_core", "bootstrap_auc") in names and ("ray_core", "parameter_server") in names


def test_discover_rejects_a_script_without_twin(tmp_path):
    make_fake_repo(tmp_path, {"ok": ("", "1", "", "1")})
    (tmp_path / "ray_core" / "ray_version" / "lonely.py").write_text("")
    with pytest.raises(tour.PairConfigError, match="lonely"):
        tour.discover(root=tmp_path)


def test_discover_rejects_a_pair_without_entry(tmp_path):
    make_fake_repo(tmp_path, {"ok": ("", "1", "", "1")})
    for side in tour.SIDES:
        (tmp_path / "ray_core" / side / "extra.py").write_text("")
    with pytest.raises(tour.PairConfigError, match=r"no \[extra\] entry"):
        tour.discover(root=tmp_path)


@pytest.mark.timeout(120)
def test_tour_reports_every_pair_and_fails_on_errors_and_disagreement(tmp_path):
    make_fake_repo(tmp_path, {
        "a_agrees": ("", "[1, 2]", "", "[1, 2]"),
        "b_disagrees": ("", "[1, 2]", "", "[1, 3]"),
        "c_crashes": ("", "1", "sys.exit('error: boom')", "1"),
        "d_agrees_too": ("", "{'x': 1}", "", "{'x': 1}"),
    })
    proc = subprocess.run(
        [sys.executable, "-m", "tools.tour", "--root", str(tmp_path)], capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "reports" / "demo.json").read_text())
    rows = {row["pair"]: row for row in report["rows"]}
    assert set(rows) == {"a_agrees", "b_disagrees", "c_crashes", "d_agrees_too"}
    assert rows["a_agrees"]["agree"] and rows["d_agrees_too"]["agree"]
    assert not rows["b_disagrees"]["agree"] and not rows["c_crashes"]["agree"]
    assert "boom" in " ".join(rows["c_crashes"]["problems"])
    assert "boom" in "".join(rows["c_crashes"]["output"].values())  # what the script printed is kept
    assert rows["a_agrees"]["speedup"] == pytest.approx(1.0)
    markdown = (tmp_path / "reports" / "demo.md").read_text()
    assert "| ray_core | b_disagrees |" in markdown and "NO" in markdown and "ERROR" in markdown
    # each pair's row is printed as soon as it is done, under a progress line
    out = proc.stdout
    assert out.index("[1/4] ray_core/a_agrees") < out.index("  | ray_core | a_agrees |") < out.index("[2/4]")


def test_tour_all_agree_exits_zero(tmp_path):
    make_fake_repo(tmp_path, {"only": ("", "[1]", "", "[1]")})
    proc = subprocess.run(
        [sys.executable, "-m", "tools.tour", "--root", str(tmp_path)], capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| ray_core | only |" in proc.stdout


def test_demo_rows_and_the_reason_printed_beside_a_slower_ray_row(tmp_path):
    make_fake_repo(tmp_path, {"p": ("", "1", "", "1")})
    for side, seconds in (("baseline", "0.5"), ("ray_version", "1.0 if a.smoke_test else 0.25")):
        script = tmp_path / "ray_core" / side / "p.py"
        text = script.read_text().replace('"seconds": 0.5', f'"seconds": {seconds}')
        script.write_text(text.replace("a = p.parse_args()", "a, _ = p.parse_known_args()"))
    (tmp_path / "ray_core" / "pairs.toml").write_text(
        '[p]\nagree = "exact"\nsmoke = ["--smoke-test"]\nbench = []\nsmoke_note = "start-up: tiny work"\n'
        '[[p.demo_rows]]\nlabel = "bigger"\nargs = ["--big"]\nnote = "never shown: Ray is faster here"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "tools.tour", "--root", str(tmp_path)], capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "reports" / "demo.json").read_text())["rows"]
    assert [(r["label"], r["speedup"]) for r in rows] == [("", 0.5), ("bigger", 2.0)]
    assert "| 0.50x | yes | start-up: tiny work |" in proc.stdout
    assert "never shown" not in proc.stdout


def test_a_pair_marked_demo_false_is_left_out_of_the_demo_only(tmp_path):
    make_fake_repo(tmp_path, {"quick": ("", "[1]", "", "[1]"), "long": ("", "[1]", "", "[1]")})
    toml = tmp_path / "ray_core" / "pairs.toml"
    toml.write_text(toml.read_text().replace("[long]\n", "[long]\ndemo = false\n"))
    proc = subprocess.run(
        [sys.executable, "-m", "tools.tour", "--root", str(tmp_path)], capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ray_core/long: in make bench, not in the demo" in proc.stdout
    assert [r["pair"] for r in json.loads((tmp_path / "reports" / "demo.json").read_text())["rows"]] == ["quick"]
    proc = subprocess.run([sys.executable, "-m", "tools.tour", "--root", str(tmp_path), "--bench"],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {r["pair"] for r in json.loads((tmp_path / "reports" / "bench.json").read_text())["rows"]} == {"long", "quick"}


def test_the_smoke_note_explains_the_smoke_row_only():
    pair = tour.Pair("ray_core", "p", {"agree": "exact", "smoke": ["--smoke-test"], "bench": ["--big"],
                                        "smoke_note": "start-up: tiny work"})
    assert pair.rows(bench=False)[0]["note"] == "start-up: tiny work"
    assert pair.rows(bench=True)[0]["note"] == ""
