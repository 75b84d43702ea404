"""Generated product reviews for the LoRA fine-tune (ray_train/*/finetune_lora.py): the same on both sides.

Each example asks for the sentiment of a short review in one word; the answer is `positive` or `negative`.
SmolLM2-Instruct answers such a prompt with a sentence ("The review is positive."), so the share of held-out
answers that are exactly the right word starts near 0 and a LoRA adapter lifts it close to 1 in a few dozen
steps: a change a person can see in the printed answers.

The held-out reviews are about products that never occur in the training reviews, and both sets are drawn
from the seed alone, so every process (the baseline, each Ray Train worker) builds the same lists.

    python -m workshop.lora_data      # print a few examples
"""

from __future__ import annotations

import random

LABELS = ("positive", "negative")
INSTRUCTION = "Is this review positive or negative? Answer with one word."
# Replaces SmolLM2's default system prompt (20 tokens): shorter sequences, faster steps. The base model still
# answers with a sentence, so the instruction alone does not give the one-word format.
SYSTEM = "Answer briefly."
MARGIN = 0.3  # the least rise in the held-out share of exact answers that counts as "the adapter learned it"

TRAIN_PRODUCTS = (
    "these headphones", "this blender", "the phone case", "this backpack", "the desk lamp", "this kettle",
    "the running shoes", "this keyboard", "the coffee grinder", "this water bottle", "the office chair",
    "this toaster", "the yoga mat", "this umbrella", "the bike light", "this frying pan", "the charger",
    "this tent", "the wall clock", "this hair dryer",
)
HELD_OUT_PRODUCTS = (
    "this vacuum cleaner", "the travel mug", "these sunglasses", "the power bank", "this rice cooker",
    "the garden hose", "this alarm clock", "the laptop stand",
)
PHRASES = {
    "positive": (
        "works perfectly", "is worth every penny", "exceeded my expectations", "is great quality",
        "arrived quickly and works great", "does exactly what I wanted", "is sturdy and well made",
        "made my mornings easier", "is the best I have owned", "still works like new after months",
    ),
    "negative": (
        "broke after two days", "is a waste of money", "stopped working within a week", "arrived damaged",
        "feels cheap and flimsy", "never worked properly", "is much worse than described",
        "fell apart on the first use", "is too loud and leaks", "was returned the same day",
    ),
}
CLOSERS = {
    "positive": ("Highly recommended.", "I would buy it again.", "Five stars.", "Very happy.", ""),
    "negative": ("Do not buy it.", "I want a refund.", "One star.", "Very disappointed.", ""),
}


def prompt_for(review: str) -> str:
    """The user message for one review (the same text in training, evaluation and the printed example)."""
    return f"Review: {review}\n{INSTRUCTION}"


def messages(example: dict[str, str]) -> list[dict[str, str]]:
    """The chat messages before the answer: the system prompt and the review with the instruction."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": example["prompt"]}]


def _review(rng: random.Random, products: tuple[str, ...], label: str) -> str:
    product = rng.choice(products)
    text = f"{product[0].upper()}{product[1:]} {rng.choice(PHRASES[label])}."
    closer = rng.choice(CLOSERS[label])
    return f"{text} {closer}".strip()


def make_examples(count: int, seed: int, held_out: bool = False) -> list[dict[str, str]]:
    """`count` examples {"prompt", "response"}, half of each label in a seeded order.

    Training and held-out examples come from disjoint product lists (and separate random streams), so no
    held-out review appears in training.
    """
    rng = random.Random(f"lora-reviews-{seed}-{'held-out' if held_out else 'train'}")
    products = HELD_OUT_PRODUCTS if held_out else TRAIN_PRODUCTS
    labels = [LABELS[i % 2] for i in range(count)]
    rng.shuffle(labels)
    return [{"prompt": prompt_for(_review(rng, products, label)), "response": label} for label in labels]


def main() -> None:
    for example in make_examples(3, 0) + make_examples(3, 0, held_out=True):
        print(f"{example['prompt']!r} -> {example['response']!r}")


if __name__ == "__main__":
    main()
