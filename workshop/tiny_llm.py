"""A tiny causal language model and a tiny instruction dataset, built locally from a seed (no hub, no downloads).

The model is a random-init Llama (vocab 512, hidden 64, 2 heads of 32, 2 layers) with a BPE tokenizer trained
here with `tokenizers`, saved with `save_pretrained` plus a chat template, so it loads like any hub model:
`AutoModelForCausalLM.from_pretrained(folder)`, `AutoTokenizer.from_pretrained(folder)`, or vLLM's
`LLM(model=folder, dtype="float32")` (head_dim 32 is one the CPU attention kernels accept).
It knows nothing; it exists so that scripts and tests exercise the real code paths in seconds.

    python -m workshop.tiny_llm outputs/tiny_llm     # build it once by hand
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
MARKER = "tiny_llm.json"  # written last: a folder without it is an unfinished build

ANIMALS = ["cat", "dog", "owl", "fox", "bee", "cow", "elk", "yak", "ant", "bat", "eel", "hen"]
COLOURS = ["red", "blue", "green", "gold", "grey", "pink", "black", "white"]
FOODS = ["apples", "bread", "fish", "seeds", "honey", "grass", "rice", "nuts"]


def make_instruction_examples(count: int, seed: int) -> list[dict[str, str]]:
    """Instruction/response pairs about a made-up world: each animal has one colour and one favourite food.

    The facts are fixed by the seed, so a model can learn them; a prompt asks for one fact.
    """
    rng = random.Random(seed)
    colour = {a: rng.choice(COLOURS) for a in ANIMALS}
    food = {a: rng.choice(FOODS) for a in ANIMALS}
    examples = []
    for _ in range(count):
        animal = rng.choice(ANIMALS)
        if rng.random() < 0.5:
            examples.append({"prompt": f"What colour is the {animal}?", "response": f"The {animal} is {colour[animal]}."})
        else:
            examples.append({"prompt": f"What does the {animal} eat?", "response": f"The {animal} eats {food[animal]}."})
    return examples


def format_example(example: dict[str, str]) -> str:
    """One training text: the same chat markup the tokenizer's chat template produces."""
    return f"<|user|>\n{example['prompt']}</s>\n<|assistant|>\n{example['response']}</s>\n"


def build_tiny_llama(folder: str | Path, seed: int = 0, texts: list[str] | None = None) -> Path:
    """Train a BPE tokenizer on `texts` (default: the instruction examples), build a random-init Llama, save both.

    Returns the folder. Rebuilding the same folder with the same seed gives the same weights.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).unlink(missing_ok=True)
    if texts is None:
        texts = [format_example(e) for e in make_instruction_examples(2000, seed)]

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(folder)
    (folder / MARKER).write_text(json.dumps({"seed": seed, "vocab_size": len(fast)}) + "\n")
    return folder


def is_built(folder: str | Path) -> bool:
    return (Path(folder) / MARKER).exists()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/tiny_llm")
    print(f"Tiny Llama written to {build_tiny_llama(target)}")
