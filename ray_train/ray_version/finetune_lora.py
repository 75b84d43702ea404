"""Fine-tune a causal language model with a LoRA adapter on N Ray Train workers: the same Trainer + peft inside TorchTrainer.

The data is a small generated instruction set (workshop/tiny_llm.py: questions about a made-up world). The script
measures the held-out loss and generates an answer before training, trains a LoRA adapter with `Trainer`, saves
the adapter, loads it back onto a fresh copy of the base model, and measures and generates again.
Ray Train runs the unchanged Trainer in N worker processes (Trainer sees the process group Ray set up and
trains data parallel), collects its checkpoints in persistent storage, and restarts from them after a failure.

--model takes a hub id (the default, a small public instruct model; needs internet) or a local folder;
`--model tiny` (the default with --smoke-test) builds a tiny random-init Llama locally (seconds, no downloads).

Twin: ray_train/baseline/finetune_lora.py (diff the two files to see the Ray Train changes; the numbered
comments are explained in ray_train/README.md).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)
from transformers.utils import logging as hf_logging

from workshop import cli, tiny_llm

MODULE, PAIR, SIDE = "ray_train", "finetune_lora", "ray_version"
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"  # 0.5 B parameters, Apache-2.0: fits a laptop's memory
PROMPT = "What colour is the cat?"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_model(model: str | None, smoke_test: bool, output: Path, seed: int) -> str:
    """A local folder or hub id to load; `--model tiny` (the --smoke-test default) builds a tiny Llama under --output."""
    if model == "tiny" or (model is None and smoke_test):
        folder = output.resolve() / "tiny_llm"
        return str(tiny_llm.build_tiny_llama(folder, seed=seed) if not tiny_llm.is_built(folder) else folder)
    model = model or DEFAULT_MODEL
    if Path(model).is_dir():
        return str(Path(model).resolve())  # absolute: every worker loads it (on a cluster: a shared folder)
    if HUB_ID.match(model) and not model.startswith((".", "/")):
        return model
    cli.fail(f"--model {model}: no such model folder; pass a local folder saved with save_pretrained or a hub id")


def load_base(model_name: str):
    """Tokenizer and base model in float32 (CPU-friendly); one clear line if either cannot be loaded."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModelForCausalLM.from_pretrained(model_name, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        cli.fail(f"--model {model_name}: cannot load it ({str(exc).splitlines()[0][:200]}); "
                 "pass a local folder, or check the hub id and your network")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def chat_text(tokenizer, example: dict[str, str]) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": example["prompt"]}, {"role": "assistant", "content": example["response"]}],
        tokenize=False)


def tokenize_examples(tokenizer, examples: list[dict[str, str]], max_length: int = 128) -> list[dict]:
    """A list of {input_ids, attention_mask}: a plain list is a map-style dataset Trainer accepts."""
    return [tokenizer(chat_text(tokenizer, e), truncation=True, max_length=max_length) for e in examples]


def add_lora(model, rank: int):
    """Freeze the base model and add a trainable low-rank adapter to every linear layer."""
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@torch.no_grad()
def held_out_loss(model, tokenizer, examples: list[dict[str, str]]) -> float:
    """Mean next-token loss over the held-out examples, one example at a time (no padding effects)."""
    model.eval()
    losses = []
    for features in tokenize_examples(tokenizer, examples):
        ids = torch.tensor([features["input_ids"]], device=model.device)
        losses.append(model(input_ids=ids, labels=ids).loss.item())
    return sum(losses) / len(losses)


@torch.no_grad()
def generate(model, tokenizer, prompt: str, max_new_tokens: int = 16) -> str:
    """Greedy answer to one chat prompt (deterministic: the same weights give the same text)."""
    model.eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def train_func(config: dict) -> None:
    """Runs in every Ray Train worker: load the base model, add LoRA, train with the same Trainer."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    world = ray.train.get_context().get_world_size()
    tokenizer, model = load_base(config["model"])
    model = add_lora(model, config["lora_rank"])
    train_set = tokenize_examples(tokenizer, config["train_examples"])  # Trainer shards it over the workers
    training_args = TrainingArguments(
        output_dir=config["checkpoint_dir"],  # local scratch; RayTrainReportCallback copies checkpoints to storage
        per_device_train_batch_size=config["batch_size"] // world,  # [2] the same global batch as one process
        num_train_epochs=config["epochs"],
        learning_rate=config["lr"],
        logging_steps=config["logging_steps"],
        save_strategy="epoch",  # [9] each save is reported to Ray Train with its metrics
        save_total_limit=2,
        report_to="none",
        seed=config["seed"],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,  # N workers' progress bars would interleave; the driver prints a summary
        ddp_find_unused_parameters=False,  # LoRA uses every adapter weight each step: skip DDP's extra graph walk
    )
    trainer = Trainer(
        model=model, args=training_args, train_dataset=train_set, processing_class=tokenizer,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[RayTrainReportCallback()],  # [9] on every save: ray.train.report(metrics, checkpoint)
    )
    trainer = prepare_trainer(trainer)  # [10] lets Trainer also read Ray Data shards (get_dataset_shard)
    checkpoint = ray.train.get_checkpoint()  # [4] set when Ray Train restarted the workers after a failure
    if checkpoint is None:
        trainer.train()
    else:
        with checkpoint.as_directory() as folder:
            trainer.train(resume_from_checkpoint=str(Path(folder) / RayTrainReportCallback.CHECKPOINT_NAME))


def check_cluster_fits(workers: int, use_gpu: bool) -> None:
    """Fail in one line if the cluster can never place the workers (Ray would otherwise wait for them forever)."""
    resources = ray.cluster_resources()
    kind = "GPU" if use_gpu else "CPU"
    have = int(resources.get(kind, 0))
    if use_gpu and have == 0:
        cli.fail("--use-gpu: this Ray cluster has no GPUs; drop --use-gpu to train on CPUs")
    if workers > have:
        cli.fail(f"--workers {workers}: the Ray cluster has only {have} {kind}s and each worker needs 1; "
                 f"pass --workers {max(have, 1)} or fewer, or add nodes")


def main() -> None:
    parser = cli.make_parser(__doc__, module=MODULE, pair=PAIR, side=SIDE)
    parser.add_argument("--model", default=None,
                        help=f"hub id or local folder of a causal LM (default {DEFAULT_MODEL}; "
                             "'tiny' or --smoke-test: a tiny random-init Llama built locally)")
    parser.add_argument("--examples", type=cli.positive_int, default=1024, help="training examples")
    parser.add_argument("--epochs", type=cli.positive_int, default=2, help="passes over the training examples")
    parser.add_argument("--batch-size", type=cli.positive_int, default=16,
                        help="examples per optimizer step, over all workers together")
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate of the adapter")
    parser.add_argument("--lora-rank", type=cli.positive_int, default=8, help="rank of the LoRA matrices")
    parser.add_argument("--workers", type=cli.positive_int, default=2, help="Ray Train workers (1 CPU or GPU each)")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
    parser.add_argument("--max-failures", type=int, default=2, help="worker-group restarts Ray Train may make")
    args = parser.parse_args()
    if args.smoke_test:
        args.examples, args.epochs, args.lr = 192, 2, 5e-3
    if args.batch_size % args.workers:
        parser.error(f"--batch-size {args.batch_size} must be divisible by --workers {args.workers}")
    output = cli.prepare_output(args.output)
    model_name = resolve_model(args.model, args.smoke_test, output, args.seed)
    hf_logging.set_verbosity_error()  # keep the weight-loading reports and bars out of the workshop output
    hf_logging.disable_progress_bar()
    storage = output.resolve() / "ray_results"  # [8] persistent storage: absolute; on a cluster, a shared path
    shutil.rmtree(storage / PAIR, ignore_errors=True)  # a re-run starts afresh (same name would auto-resume)

    started = time.perf_counter()
    with cli.ray_errors():  # one clear line, not a traceback or a long wait, if the cluster is unreachable
        ray.init()  # [1] start Ray on this machine, or join the cluster named by RAY_ADDRESS
    startup = time.perf_counter() - started
    check_cluster_fits(args.workers, args.use_gpu)

    examples = tiny_llm.make_instruction_examples(args.examples + 64, args.seed)
    train_examples, val_examples = examples[:args.examples], examples[args.examples:]
    tokenizer, base = load_base(model_name)
    loss_before, answer_before = held_out_loss(base, tokenizer, val_examples), generate(base, tokenizer, PROMPT)
    print(f"Base model {model_name}: held-out loss {loss_before:.3f}")
    print(f"  {PROMPT!r} -> {answer_before!r}")

    config = {
        "model": model_name, "train_examples": train_examples, "batch_size": args.batch_size,
        "epochs": args.epochs, "lr": args.lr, "lora_rank": args.lora_rank, "seed": args.seed,
        "logging_steps": max(1, args.examples // args.batch_size // 4),
        "checkpoint_dir": str(output.resolve() / "hf_checkpoints"),
    }
    print(f"Fine-tuning a LoRA adapter (rank {args.lora_rank}) on {args.examples} examples, {args.epochs} epochs, "
          f"batch {args.batch_size}, with {args.workers} Ray Train workers")
    trainer = ray.train.torch.TorchTrainer(  # [8] the same Trainer in N workers, with storage and fault tolerance
        train_func,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=args.workers, use_gpu=args.use_gpu),
        run_config=ray.train.RunConfig(
            name=PAIR,
            storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=args.max_failures),
            # Ray Train tees print() in workers into its logger as well; one copy of each line is enough
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
        ),
    )
    with cli.Timer() as timer:
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            cli.fail(f"training failed after {args.max_failures} restart(s): {str(exc).splitlines()[-1][:300]}")

    adapter_dir = output.resolve() / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    with result.checkpoint.as_directory() as folder:  # [11] the last checkpoint, fetched from the run's storage
        hf_checkpoint = Path(folder) / RayTrainReportCallback.CHECKPOINT_NAME
        shutil.copytree(hf_checkpoint, adapter_dir, ignore=shutil.ignore_patterns("optimizer.pt", "rng_state*",
                                                                                  "scheduler.pt", "training_args.bin"))
        state = json.loads((hf_checkpoint / "trainer_state.json").read_text())
    log = {"train_losses": [entry["loss"] for entry in state["log_history"] if "loss" in entry],
           "steps": state["global_step"]}

    tuned = PeftModel.from_pretrained(load_base(model_name)[1], adapter_dir)  # the saved adapter on a fresh base
    loss_after, answer_after = held_out_loss(tuned, tokenizer, val_examples), generate(tuned, tokenizer, PROMPT)
    adapter_mb = sum(f.stat().st_size for f in adapter_dir.iterdir()) / 1e6
    print(f"Adapter {adapter_dir} ({adapter_mb:.1f} MB) on the base model: held-out loss {loss_before:.3f} -> "
          f"{loss_after:.3f}")
    print(f"  {PROMPT!r} -> {answer_after!r}")
    print(f"Work time: {timer.seconds:.2f} s for {log['steps']} training steps (Ray start-up {startup:.1f} s, "
          "not included)")
    path = cli.write_result(
        output, module=MODULE, pair=PAIR, side=SIDE, seconds=timer.seconds, smoke_test=args.smoke_test,
        answer={"loss_fell": loss_after < loss_before, "adapter_generates": bool(answer_after)},
        model=model_name, workers=args.workers, held_out_loss_before=loss_before, held_out_loss_after=loss_after,
        train_losses=log["train_losses"], steps=log["steps"], answer_before=answer_before,
        answer_after=answer_after, adapter=str(adapter_dir), adapter_mb=adapter_mb,
        batch_size=args.batch_size, lr=args.lr, startup_seconds=startup, checkpoints=result.path,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
