"""Tokens/s, time to first token and p99 latency of both vllm_examples pairs, each side measured in one run.

    python vllm_examples/benchmarks/llm_throughput.py               # after `make bench`'s tour: its results
    python vllm_examples/benchmarks/llm_throughput.py --rerun       # runs both pairs at bench size itself
    python vllm_examples/benchmarks/llm_throughput.py --smoke-test  # both pairs at smoke size: does it run

Offline (batch_generate): generated tokens/s of HF generate() vs Ray Data + vLLM on the same prompts and
lengths, each timed end to end (model load or engine start included). Beside them, plain
vLLM without Ray (benchmarks/plain_vllm.py, same prompts, engine arguments and sampling), which splits the
gain into what vLLM brings and what Ray adds or costs. One row per `bench_rows` entry of the pair: forced
lengths (every answer exactly --max-tokens, as the agreement test needs) and answers that stop at
end-of-sequence (--stop-at-eos), where continuous batching can refill the batch as answers finish.
Online (openai_server): the shared client's streaming load test at the bench concurrency (16): output
tokens/s, time to first token p50/p99 and latency p99 for both servers, and `vllm serve` without Ray.
The sizes are the `bench` arguments in vllm_examples/pairs.toml; the model is the packaged
SmolLM2-135M-Instruct (float32, offline).
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

from tools import tour  # noqa: E402
from workshop import cli  # noqa: E402

MODULE = "vllm_examples"
REPORTS = ROOT / "reports"
PLAIN_VLLM = Path(__file__).resolve().parent / "plain_vllm.py"
VLLM_SERVE = Path(__file__).resolve().parent / "vllm_serve.py"


def results_for(pair: tour.Pair, smoke: bool, rerun: bool, scratch: Path, row: int = 0) -> dict[str, dict]:
    """result.json of both sides: the tour's bench run if it used the same arguments, else a fresh run."""
    args = pair.rows(bench=not smoke)[row]
    found = {}
    for side in tour.SIDES:
        path = ROOT / "outputs" / "tour" / "bench" / MODULE / pair.name / f"{side}-{row}" / cli.RESULT_FILE
        if not (smoke or rerun) and path.exists():
            result = json.loads(path.read_text())
            if result["argv"][:len(args[side])] == args[side]:
                found[side] = result
                continue
        print(f"  running {pair.module}/{side}/{pair.name}.py {' '.join(args[side])}", flush=True)
        ran = tour.run_script(pair.script(side), ROOT, args[side], scratch / pair.name / f"{side}-{row}",
                              3600.0, None)
        if ran.error:
            cli.fail(f"{pair.name} {side}: {ran.error} (log: {ran.log})")
        found[side] = ran.result
    # the attribution row: the Ray side's arguments, the same engine without Ray
    script, side = (PLAIN_VLLM, "plain_vllm") if pair.name == "batch_generate" else (VLLM_SERVE, "vllm_serve")
    print(f"  running {script.relative_to(ROOT)} {' '.join(args['ray_version'])}", flush=True)
    ran = tour.run_script(script, ROOT, args["ray_version"], scratch / pair.name / f"{side}-{row}", 3600.0, None)
    if ran.error:
        cli.fail(f"{script.name}: {ran.error} (log: {ran.log})")
    found[side] = ran.result
    return found


def identical(a: dict, b: dict) -> int:
    return sum(x == y for x, y in zip(a["answer"]["token_ids"], b["answer"]["token_ids"]))


def offline_rows(results: dict[str, dict], label: str) -> dict:
    sides = ("baseline", "plain_vllm", "ray_version")
    tps = {side: results[side]["details"]["tokens_per_second"] for side in sides}
    return {
        "label": label, "prompts": results["baseline"]["answer"]["prompts"],
        "max_tokens": results["baseline"]["answer"]["max_tokens"],
        "generated_tokens": {side: results[side]["details"]["generated_tokens"] for side in sides},
        "seconds": {side: results[side]["seconds"] for side in sides},
        "tokens_per_s": tps,
        "speedup": round(tps["ray_version"] / tps["baseline"], 2),  # the pair: what the target is about
        "vllm_over_baseline": round(tps["plain_vllm"] / tps["baseline"], 2),  # what vLLM brings
        "ray_over_plain_vllm": round(tps["ray_version"] / tps["plain_vllm"], 2),  # what Ray adds (or costs)
        "identical_completions": {
            "baseline_ray": identical(results["baseline"], results["ray_version"]),
            "baseline_plain_vllm": identical(results["baseline"], results["plain_vllm"]),
            "plain_vllm_ray": identical(results["plain_vllm"], results["ray_version"]),
        },
    }


def online_rows(results: dict[str, dict]) -> dict:
    load = {side: results[side]["details"]["load"] for side in (*tour.SIDES, "vllm_serve")}
    row = {"concurrency": load["baseline"]["concurrency"], "requests": load["baseline"]["requests"],
           "max_tokens": load["baseline"]["max_tokens"]}
    for side, short in (("baseline", "baseline"), ("vllm_serve", "vllm_serve"), ("ray_version", "ray")):
        for key in ("output_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "latency_p50_ms", "latency_p99_ms"):
            row[f"{short}_{key}"] = load[side][key]
    ray_tps = load["ray_version"]["output_tokens_per_s"]
    baseline_tps = load["baseline"]["output_tokens_per_s"]
    row["speedup"] = round(ray_tps / baseline_tps, 2)
    row["vllm_over_baseline"] = round(load["vllm_serve"]["output_tokens_per_s"] / baseline_tps, 2)  # vLLM's
    row["ray_over_vllm_serve"] = round(ray_tps / load["vllm_serve"]["output_tokens_per_s"], 2)  # Ray's
    row["startup_seconds"] = {side: results[side]["details"].get("startup_seconds")
                              for side in (*tour.SIDES, "vllm_serve")}
    return row


def offline_markdown(row: dict) -> list[str]:
    names = {"baseline": "HF generate() (baseline)", "plain_vllm": "plain vLLM, no Ray (vllm.LLM.chat)",
             "ray_version": "Ray Data + vLLM"}
    same = row["identical_completions"]
    label = f" ({row['label']})" if row["label"] else ""
    return [
        f"Offline{label}: {row['prompts']} prompts, up to "
        f"{row['max_tokens']} tokens each, end to end (model load / engine start included); token-identical "
        f"completions: baseline vs Ray {same['baseline_ray']}/{row['prompts']}, baseline vs plain vLLM "
        f"{same['baseline_plain_vllm']}, plain vLLM vs Ray {same['plain_vllm_ray']}.\n",
        "| side | generated tokens | seconds | tokens/s |", "|---|---:|---:|---:|",
        *[f"| {name} | {row['generated_tokens'][side]} | {row['seconds'][side]:.1f} | "
          f"{row['tokens_per_s'][side]:.1f} |" for side, name in names.items()],
        f"\nSpeedup: {row['speedup']:.2f}x; of it, vLLM over the baseline "
        f"{row['vllm_over_baseline']:.2f}x and Ray Data over plain vLLM {row['ray_over_plain_vllm']:.2f}x.\n",
    ]


def markdown(offline: list[dict], online: dict, machine: str) -> str:
    return "\n".join([
        f"# vllm_examples throughput\n\nMachine: {machine}\n",
        *[line for row in offline for line in offline_markdown(row)],
        f"Online: {online['requests']} streaming chat requests, concurrency {online['concurrency']}, "
        f"{online['max_tokens']} tokens each, through vllm_examples/openai_client.py.\n",
        "| server | output tokens/s | TTFT p50 / p99 ms | latency p50 / p99 ms |", "|---|---:|---:|---:|",
        f"| FastAPI + HF generate() (baseline) | {online['baseline_output_tokens_per_s']:.1f} | "
        f"{online['baseline_ttft_p50_ms']:.0f} / {online['baseline_ttft_p99_ms']:.0f} | "
        f"{online['baseline_latency_p50_ms']:.0f} / {online['baseline_latency_p99_ms']:.0f} |",
        *[f"| {name} | {online[f'{side}_output_tokens_per_s']:.1f} | "
          f"{online[f'{side}_ttft_p50_ms']:.0f} / {online[f'{side}_ttft_p99_ms']:.0f} | "
          f"{online[f'{side}_latency_p50_ms']:.0f} / {online[f'{side}_latency_p99_ms']:.0f} |"
          for side, name in (("vllm_serve", "`vllm serve`, no Ray"), ("ray", "Ray Serve LLM (vLLM)"))],
        f"\nSpeedup: {online['speedup']:.2f}x; of it, vLLM over the baseline "
        f"{online['vllm_over_baseline']:.2f}x and Ray Serve LLM over `vllm serve` {online['ray_over_vllm_serve']:.2f}x.\n",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--smoke-test", action="store_true", help="both pairs at smoke size (does it run?)")
    parser.add_argument("--rerun", action="store_true", help="run the pairs even if the tour's results exist")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="folder for the report files")
    args = parser.parse_args()
    pairs = {p.name: p for p in tour.discover([MODULE], ROOT)}

    batch = pairs["batch_generate"]
    with tempfile.TemporaryDirectory() as tmp:
        offline = [offline_rows(results_for(batch, args.smoke_test, args.rerun, Path(tmp), i), spec["label"])
                   for i, spec in enumerate(batch.rows(bench=not args.smoke_test))]
        online = online_rows(results_for(pairs["openai_server"], args.smoke_test, args.rerun, Path(tmp)))
    report = {**tour.stamp(), "smoke_test": args.smoke_test, "offline": offline,
              "online": online}
    machine = report["machine"]
    text = markdown(offline, online, machine)
    report["table"] = text.splitlines()
    print(text)
    name = "vllm_examples_llm_throughput" + ("_smoke" if args.smoke_test else "")
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.reports / f"{name}.md").write_text(text + "\n")
    print(f"Reports: {args.reports / name}.json, .md")


if __name__ == "__main__":
    main()
