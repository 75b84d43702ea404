"""Fine-tune SmolLM2-135M-Instruct with a LoRA adapter in one process: transformers.Trainer + peft.

The task: answer the sentiment of a short product review with exactly one word, `positive` or `negative`
(generated reviews, workshop/lora_data.py). The base model answers with a sentence ("This review is
positive."); the script measures the share of held-out reviews answered with exactly the right word and
prints one held-out answer, trains a LoRA adapter with `Trainer` (the loss only on the answer tokens), saves
the adapter, loads it back onto a fresh copy of the base model, and measures and prints again.

--model defaults to the packaged SmolLM2 (no download); a local folder saved with save_pretrained or a hub id
works too. Float32 on CPU.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_train/README.md):

    diff -u ray_train/baseline/finetune_lora.py ray_train/ray_version/finetune_lora.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments,
                          set_seed)
from transformers.utils import logging as hf_logging

from workshop import cli, lora_data, models


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


def train_func(config: dict) -> dict:
    """Load the base model, add LoRA, train with Trainer, save the adapter; returns the training loss log."""
    tokenizer, model = load_base(config["model"])
    set_seed(config["seed"])  # the adapter's initial weights
    model = add_lora(model, config["lora_rank"])
    train_set = tokenize_examples(tokenizer, config["train_examples"])
    training_args = TrainingArguments(
        output_dir=config["checkpoint_dir"],
        per_device_train_batch_size=config["batch_size"],
        num_train_epochs=config["epochs"],
        learning_rate=config["lr"],
        warmup_steps=config["warmup_steps"],
        logging_steps=config["logging_steps"],
        save_strategy="epoch",
        save_total_limit=2,
        report_to="none",
        seed=config["seed"],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,  # the loss lines say how far it is
    )
    trainer = Trainer(
        model=model, args=training_args, train_dataset=train_set, processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    trainer.train()
    trainer.save_model(config["adapter_dir"])  # a PeftModel saves only the adapter: about 2 MB, not the base model
    return {"train_losses": [log["loss"] for log in trainer.state.log_history if "loss" in log],
            "steps": trainer.state.global_step}


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--model", default=None,
                        help="local folder or hub id of a causal LM (default: the packaged SmolLM2-135M-Instruct)")
    parser.add_argument("--examples", type=cli.positive_int, default=512, help="training examples")
    parser.add_argument("--held-out", type=cli.positive_int, default=128, help="held-out examples for the metric")
    parser.add_argument("--epochs", type=cli.positive_int, default=1, help="passes over the training examples")
    parser.add_argument("--batch-size", type=cli.positive_int, default=8, help="examples per optimizer step")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the adapter")
    parser.add_argument("--lora-rank", type=cli.positive_int, default=8, help="rank of the LoRA matrices")
    args = parser.parse_args()
    if args.smoke_test:
        args.examples, args.held_out, args.epochs, args.lr = 96, 32, 1, 2e-3
    output = cli.prepare_output(args.output)
    model_name = models.resolve_llm(args.model)
    hf_logging.set_verbosity_error()  # keep the weight-loading reports and bars out of the workshop output
    hf_logging.disable_progress_bar()

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
        "checkpoint_dir": str(output.resolve() / "hf_checkpoints"), "adapter_dir": str(output.resolve() / "adapter"),
    }
    print(f"Fine-tuning a LoRA adapter (rank {args.lora_rank}) on {args.examples} examples, {args.epochs} epoch(s), "
          f"batch {args.batch_size}, in one process ({torch.get_num_threads()} torch threads)")
    with cli.Timer() as timer:
        log = train_func(config)

    adapter_dir = Path(config["adapter_dir"])
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
        model=model_name, workers=1, held_out=len(val_examples),
        steps=log["steps"], shown_prompt=shown["prompt"], shown_label=shown["response"],
        answer_before=answer_before, answer_after=answer_after,
        adapter=str(adapter_dir), adapter_mb=adapter_mb,
        example={"input": shown["prompt"], "output": f"adapter: {answer_after} | base model: {answer_before}"},
        batch_size=args.batch_size, lr=args.lr,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
