"""Tokens/s, time to first token and p99 latency of both vllm_examples pairs, against the module's targets.

    python vllm_examples/benchmarks/llm_throughput.py               # after `make bench`'s tour: its results
    python vllm_examples/benchmarks/llm_throughput.py --rerun       # runs both pairs at bench size itself
    python vllm_examples/benchmarks/llm_throughput.py --smoke-test  # both pairs at smoke size: does it run

Offline (batch_generate): generated tokens/s of HF generate() vs Ray Data + vLLM on the same prompts and
lengths, each timed end to end (model load or engine start included); target: Ray >= 5x.
Online (openai_server): the shared client's streaming load test at the bench concurrency (16): output
tokens/s, time to first token p50/p99 and latency p99 for both servers; target: Ray Serve LLM >= 3x tokens/s.
The sizes are the `bench` arguments in vllm_examples/pairs.toml (a local random 28M-parameter Llama: no hub).
`make bench` runs the tour first, so this script reads those result files instead of running everything twice.
Writes reports/vllm_examples_llm_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from workshop import cli, tour  # noqa: E402

MODULE = "vllm_examples"
REPORTS = ROOT / "reports"
TARGETS = {"batch_generate": 5.0, "openai_server": 3.0}


def results_for(pair: tour.Pair, smoke: bool, rerun: bool, scratch: Path) -> dict[str, dict]:
    """result.json of both sides: the tour's bench run if it used the same arguments, else a fresh run."""
    args = pair.rows(bench=not smoke)[0]
    found = {}
    for side in tour.SIDES:
        path = ROOT / "outputs" / "tour" / "bench" / MODULE / pair.name / f"{side}-0" / cli.RESULT_FILE
        if not (smoke or rerun) and path.exists():
            result = json.loads(path.read_text())
            if result["argv"][:len(args[side])] == args[side]:
                found[side] = result
                continue
        print(f"  running {pair.module}/{side}/{pair.name}.py {' '.join(args[side])}", flush=True)
        ran = tour.run_script(pair.script(side), ROOT, args[side], scratch / pair.name / side, 3600.0, None)
        if ran.error:
            cli.fail(f"{pair.name} {side}: {ran.error} (log: {ran.log})")
        found[side] = ran.result
    return found


def offline_rows(results: dict[str, dict]) -> dict:
    tps = {side: results[side]["details"]["tokens_per_second"] for side in tour.SIDES}
    return {
        "generated_tokens": results["baseline"]["details"]["generated_tokens"],
        "baseline_seconds": results["baseline"]["seconds"], "ray_seconds": results["ray_version"]["seconds"],
        "baseline_tokens_per_s": tps["baseline"], "ray_tokens_per_s": tps["ray_version"],
        "speedup": round(tps["ray_version"] / tps["baseline"], 2),
        "identical_completions": sum(a == b for a, b in zip(results["baseline"]["answer"]["token_digests"],
                                                        results["ray_version"]["answer"]["token_digests"])),
        "prompts": results["baseline"]["answer"]["prompts"],
    }


def online_rows(results: dict[str, dict]) -> dict:
    load = {side: results[side]["details"]["load"] for side in tour.SIDES}
    row = {"concurrency": load["baseline"]["concurrency"], "requests": load["baseline"]["requests"],
           "max_tokens": load["baseline"]["max_tokens"]}
    for side, short in (("baseline", "baseline"), ("ray_version", "ray")):
        for key in ("output_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "latency_p50_ms", "latency_p99_ms"):
            row[f"{short}_{key}"] = load[side][key]
    ray_tps = load["ray_version"]["output_tokens_per_s"]
    baseline_tps = load["baseline"]["output_tokens_per_s"]
    row["speedup"] = round(ray_tps / baseline_tps, 2)
    return row


def markdown(offline: dict, online: dict, machine: str) -> str:
    def verdict(speedup, target):
        return f"{speedup:.2f}x (target >= {target:g}x: {'met' if speedup >= target else 'NOT met'})"

    return "\n".join([
        f"# vllm_examples throughput\n\nMachine: {machine}\n",
        f"Offline: {offline['prompts']} prompts, {offline['generated_tokens']} generated tokens, end to end "
        "(model load / engine start included); "
        f"{offline['identical_completions']}/{offline['prompts']} completions token-identical.\n",
        "| side | seconds | tokens/s |", "|---|---:|---:|",
        f"| HF generate() (baseline) | {offline['baseline_seconds']:.1f} | "
        f"{offline['baseline_tokens_per_s']:.1f} |",
        f"| Ray Data + vLLM | {offline['ray_seconds']:.1f} | {offline['ray_tokens_per_s']:.1f} |",
        f"\nSpeedup: {verdict(offline['speedup'], TARGETS['batch_generate'])}\n",
        f"Online: {online['requests']} streaming chat requests, concurrency {online['concurrency']}, "
        f"{online['max_tokens']} tokens each, through vllm_examples/openai_client.py.\n",
        "| server | output tokens/s | TTFT p50 / p99 ms | latency p50 / p99 ms |", "|---|---:|---:|---:|",
        f"| FastAPI + HF generate() (baseline) | {online['baseline_output_tokens_per_s']:.1f} | "
        f"{online['baseline_ttft_p50_ms']:.0f} / {online['baseline_ttft_p99_ms']:.0f} | "
        f"{online['baseline_latency_p50_ms']:.0f} / {online['baseline_latency_p99_ms']:.0f} |",
        f"| Ray Serve LLM (vLLM) | {online['ray_output_tokens_per_s']:.1f} | "
        f"{online['ray_ttft_p50_ms']:.0f} / {online['ray_ttft_p99_ms']:.0f} | "
        f"{online['ray_latency_p50_ms']:.0f} / {online['ray_latency_p99_ms']:.0f} |",
        f"\nSpeedup: {verdict(online['speedup'], TARGETS['openai_server'])}\n",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--smoke-test", action="store_true", help="both pairs at smoke size (does it run?)")
    parser.add_argument("--rerun", action="store_true", help="run the pairs even if the tour's results exist")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="folder for the report files")
    args = parser.parse_args()
    pairs = {p.name: p for p in tour.discover([MODULE], ROOT)}

    with tempfile.TemporaryDirectory() as tmp:
        offline = offline_rows(results_for(pairs["batch_generate"], args.smoke_test, args.rerun, Path(tmp)))
        online = online_rows(results_for(pairs["openai_server"], args.smoke_test, args.rerun, Path(tmp)))
    machine = tour.machine_description()
    text = markdown(offline, online, machine)
    print(text)
    name = "vllm_examples_llm_throughput" + ("_smoke" if args.smoke_test else "")
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / f"{name}.json").write_text(json.dumps(
        {"machine": machine, "smoke_test": args.smoke_test, "targets": TARGETS, "offline": offline,
         "online": online}, indent=2) + "\n")
    (args.reports / f"{name}.md").write_text(text + "\n")
    print(f"Reports: {args.reports / name}.json, .md")


if __name__ == "__main__":
    main()
