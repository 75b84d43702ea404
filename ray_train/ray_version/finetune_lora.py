"""Fine-tune SmolLM2-135M-Instruct with a LoRA adapter on N Ray Train workers: the same Trainer + peft in TorchTrainer.

The task: answer the sentiment of a short product review with exactly one word, `positive` or `negative`
(generated reviews, workshop/lora_data.py). The base model answers with a sentence ("This review is
positive."); the script measures the share of held-out reviews answered with exactly the right word and
prints one held-out answer, trains a LoRA adapter with `Trainer` (the loss only on the answer tokens), saves
the adapter, loads it back onto a fresh copy of the base model, and measures and prints again.
Ray Train runs the unchanged Trainer in N worker processes (Trainer sees the process group Ray set up and
trains data parallel), collects its checkpoints in persistent storage, and restarts from them after a failure.

--model defaults to the packaged SmolLM2 (no download); a local folder saved with save_pretrained or a hub id
works too. Float32 on CPU.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_train/README.md):

    diff -u ray_train/baseline/finetune_lora.py ray_train/ray_version/finetune_lora.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, PrinterCallback, Trainer,
                          TrainingArguments, set_seed)
from transformers.utils import logging as hf_logging

from workshop import cli, lora_data, models, ray_connect


def load_base(model_name: str):
    """Tokenizer and base model in float32 (the fast path on CPU); one clear line if either cannot be loaded."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModelForCausalLM.from_pretrained(model_name, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        cli.fail(f"--model {model_name}: cannot load it ({str(exc).splitlines()[0][:200]}); "
                 "pass a local folder, or check the hub id and your network")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def prompt_text(tokenizer, example: dict[str, str]) -> str:
    """The chat prompt up to the start of the assistant's answer (the same in training and evaluation)."""
    return tokenizer.apply_chat_template(lora_data.messages(example), add_generation_prompt=True, tokenize=False)


def tokenize_examples(tokenizer, examples: list[dict[str, str]]) -> list[dict]:
    """A list of {input_ids, attention_mask, labels}: a plain list is a map-style dataset Trainer accepts.

    The labels are -100 (ignored by the loss) on the prompt, so the adapter learns the answer, not the reviews.
    """
    features = []
    for example in examples:
        prompt = tokenizer(prompt_text(tokenizer, example), add_special_tokens=False)["input_ids"]
        answer = tokenizer(example["response"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        features.append({"input_ids": prompt + answer, "attention_mask": [1] * (len(prompt) + len(answer)),
                         "labels": [-100] * len(prompt) + answer})
    return features


def add_lora(model, rank: int):
    """Freeze the base model and add a trainable low-rank adapter to the attention's query and value projections."""
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@torch.no_grad()
def generate(model, tokenizer, examples: list[dict[str, str]], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy answers to the examples' prompts, in left-padded batches (deterministic: same weights, same text)."""
    model.eval()
    answers = []
    for start in range(0, len(examples), batch_size):
        texts = [prompt_text(tokenizer, e) for e in examples[start:start + batch_size]]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                           add_special_tokens=False).to(model.device)
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        answers += [text.strip() for text in
                    tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)]
    return answers


def evaluate(model, tokenizer, examples: list[dict[str, str]], shown: dict[str, str]
             ) -> tuple[float, list[str], str]:
    """Share of held-out answers that are exactly the right word, the answers, and the full answer to the shown
    example."""
    answers = generate(model, tokenizer, examples, max_new_tokens=4)  # "positive" + end of turn: 2 tokens
    share = sum(a == e["response"] for a, e in zip(answers, examples)) / len(examples)
    return share, answers, generate(model, tokenizer, [shown], max_new_tokens=24)[0]


def train_func(config: dict) -> None:
    """Runs in every Ray Train worker: load the base model, add LoRA, train with the same Trainer."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    world = ray.train.get_context().get_world_size()  # [1] how many workers share each step
    tokenizer, model = load_base(config["model"])
    set_seed(config["seed"])  # the adapter's initial weights
    model = add_lora(model, config["lora_rank"])
    train_set = tokenize_examples(tokenizer, config["train_examples"])  # Trainer shards it over the workers
    training_args = TrainingArguments(
        output_dir=config["checkpoint_dir"],  # local scratch; RayTrainReportCallback copies checkpoints to storage
        per_device_train_batch_size=config["batch_size"] // world,  # [1] the same global batch as one process
        num_train_epochs=config["epochs"],
        learning_rate=config["lr"],
        warmup_steps=config["warmup_steps"],
        logging_steps=config["logging_steps"],
        save_strategy="epoch",  # [2] each save is reported to Ray Train with its metrics
        save_total_limit=2,
        report_to="none",
        seed=config["seed"],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,  # the loss lines say how far it is
        ddp_find_unused_parameters=False,  # LoRA uses every adapter weight each step: skip DDP's extra graph walk
    )
    trainer = Trainer(
        model=model, args=training_args, train_dataset=train_set, processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[RayTrainReportCallback()],  # [2] on every save: ray.train.report(metrics, checkpoint)
    )
    # a worker's print() reaches the console twice in Ray Train 2.60 (its stdout, and its logger): no loss lines
    # from HF here; the losses come back in the checkpoint's trainer_state.json
    trainer.remove_callback(PrinterCallback)
    trainer = prepare_trainer(trainer)  # [3] lets Trainer also read Ray Data shards (get_dataset_shard)
    checkpoint = ray.train.get_checkpoint()  # [4] set when Ray Train restarted the workers after a failure
    if checkpoint is None:
        trainer.train()
    else:
        with checkpoint.as_directory() as folder:  # [4] Trainer resumes from the checkpoint it saved
            trainer.train(resume_from_checkpoint=str(Path(folder) / RayTrainReportCallback.CHECKPOINT_NAME))


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--model", default=None,
                        help="local folder or hub id of a causal LM (default: the packaged SmolLM2-135M-Instruct)")
    parser.add_argument("--examples", type=cli.positive_int, default=512, help="training examples")
    parser.add_argument("--held-out", type=cli.positive_int, default=128, help="held-out examples for the metric")
    parser.add_argument("--epochs", type=cli.positive_int, default=1, help="passes over the training examples")
    parser.add_argument("--batch-size", type=cli.positive_int, default=8,
                        help="examples per optimizer step, over all workers together")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the adapter")
    parser.add_argument("--lora-rank", type=cli.positive_int, default=8, help="rank of the LoRA matrices")
    parser.add_argument("--workers", type=cli.positive_int, default=2, help="Ray Train workers (1 CPU or GPU each)")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
    parser.add_argument("--max-failures", type=int, default=2, help="worker-group restarts Ray Train may make")
    parser.add_argument("--verbose", action="store_true", help="Ray Train's log lines on the console")
    args = parser.parse_args()
    if args.smoke_test:
        args.examples, args.held_out, args.epochs, args.lr = 96, 32, 1, 2e-3
    if args.batch_size % args.workers:
        parser.error(f"--batch-size {args.batch_size} must be divisible by --workers {args.workers}")
    output = cli.prepare_output(args.output)
    model_name = models.resolve_llm(args.model)  # a folder comes back absolute: every worker loads it
    hf_logging.set_verbosity_error()  # keep the weight-loading reports and bars out of the workshop output
    hf_logging.disable_progress_bar()
    storage = output.resolve() / "ray_results"  # absolute; on a cluster, a path every node can reach
    shutil.rmtree(storage / "finetune_lora", ignore_errors=True)  # a re-run starts afresh (same name would auto-resume)

    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init()  # [5] start Ray on this machine, or join the cluster named by RAY_ADDRESS
    device = "GPU" if args.use_gpu else "CPU"
    have = ray.cluster_resources().get(device, 0)
    if have < args.workers:  # Ray Train 2.60 would wait for them: a start timeout per try, then a retry
        cli.fail(f"--workers {args.workers} needs {args.workers} {device}s and the Ray cluster has {have:g}; "
                 "pass fewer --workers, or add a node (`ray status` shows what there is)")

    train_examples = lora_data.make_examples(args.examples, args.seed)
    val_examples = lora_data.make_examples(args.held_out, args.seed, held_out=True)
    # the example to print: a negative review (the base model leans towards "positive")
    shown = next((e for e in val_examples if e["response"] == "negative"), val_examples[0])
    tokenizer, base = load_base(model_name)
    share_before, _, answer_before = evaluate(base, tokenizer, val_examples, shown)
    print(f"Base model {models.display_name(model_name)}: {share_before:.0%} of {len(val_examples)} held-out reviews "
          "answered with exactly the right word")
    print(f"  {shown['prompt']!r}\n  -> {answer_before!r}")

    steps = -(-args.examples // args.batch_size) * args.epochs
    config = {
        "model": model_name, "train_examples": train_examples, "batch_size": args.batch_size,
        "epochs": args.epochs, "lr": args.lr, "lora_rank": args.lora_rank, "seed": args.seed,
        "warmup_steps": max(1, steps // 10), "logging_steps": max(1, steps // 4),
        "checkpoint_dir": str(output.resolve() / "hf_checkpoints"),
    }
    print(f"Fine-tuning a LoRA adapter (rank {args.lora_rank}) on {args.examples} examples, {args.epochs} epoch(s), "
          f"batch {args.batch_size}, with {args.workers} Ray Train workers")
    trainer = ray.train.torch.TorchTrainer(  # [6] the same Trainer in N workers, with storage and fault tolerance
        train_func,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=args.workers, use_gpu=args.use_gpu),
        run_config=ray.train.RunConfig(
            name="finetune_lora",
            storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=args.max_failures),
            logging_config=ray.train.LoggingConfig(log_level="INFO" if args.verbose else "WARNING"),  # --verbose
        ),
    )
    with cli.Timer() as timer:
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:  # more worker failures than FailureConfig allows
            cli.fail(f"training failed after {args.max_failures} restart(s): {str(exc).splitlines()[-1][:300]}")

    adapter_dir = output.resolve() / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    with result.checkpoint.as_directory() as folder:  # [7] the last checkpoint, fetched from the run's storage
        hf_checkpoint = Path(folder) / RayTrainReportCallback.CHECKPOINT_NAME
        shutil.copytree(hf_checkpoint, adapter_dir, ignore=shutil.ignore_patterns("optimizer.pt", "rng_state*",
                                                                                  "scheduler.pt", "training_args.bin"))
        state = json.loads((hf_checkpoint / "trainer_state.json").read_text())
    log = {"train_losses": [entry["loss"] for entry in state["log_history"] if "loss" in entry],
           "steps": state["global_step"]}

    tuned = PeftModel.from_pretrained(load_base(model_name)[1], adapter_dir)  # the saved adapter on a fresh base
    share_after, answers_after, answer_after = evaluate(tuned, tokenizer, val_examples, shown)
    adapter_mb = (adapter_dir / "adapter_model.safetensors").stat().st_size / 1e6
    print(f"Adapter {adapter_dir} ({adapter_mb:.1f} MB of weights) on the base model: exactly the right word "
          f"{share_before:.0%} -> {share_after:.0%} of the held-out reviews")
    print(f"  {shown['prompt']!r}\n  -> {answer_after!r}")
    print(f"Work time: {timer.seconds:.2f} s for {log['steps']} training steps (model loading included)")
    path = cli.write_result(
        args, seconds=timer.seconds,
        answer={"train_losses": log["train_losses"], "answers_after": answers_after,
                "exact_share_before": share_before, "exact_share_after": share_after,
                "rose_by_margin": share_after - share_before >= lora_data.MARGIN},
        model=model_name, workers=args.workers, held_out=len(val_examples),
        steps=log["steps"], shown_prompt=shown["prompt"], shown_label=shown["response"],
        answer_before=answer_before, answer_after=answer_after,
        adapter=str(adapter_dir), adapter_mb=adapter_mb,
        example={"input": shown["prompt"], "output": f"adapter: {answer_after} | base model: {answer_before}"},
        batch_size=args.batch_size, lr=args.lr, checkpoints=result.path,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
