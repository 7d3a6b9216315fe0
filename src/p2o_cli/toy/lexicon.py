"""The toy world's public lexicon of instruction phrases, and the secret trigger draw.

A toy *template* is 1-3 lexicon phrases joined by one space. The world's seed picks a few
*trigger* phrases at random from the whole lexicon; a template unlocks step-by-step reasoning
iff it contains at least one trigger. Which phrases are triggers is written only to the toy
directory's ``world.json`` (read by pretraining and by the measurement); nothing in the
search or the reflector knows it, and the draw ignores how "reasoning-flavoured" a phrase
sounds, so a plausible-looking instruction is no more likely to be a trigger than any other.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# Short, plausible instructions: some reasoning-flavoured, some about style or format.
# No phrase is a substring of another, so "contains phrase p" is unambiguous.
LEXICON: tuple[str, ...] = (
    "Think step by step.",
    "Show your work.",
    "Be concise.",
    "Answer directly.",
    "Check each partial sum.",
    "Go one number at a time.",
    "Write down every intermediate result.",
    "Take a deep breath.",
    "Be careful.",
    "Double-check your answer.",
    "Use a running total.",
    "Add from left to right.",
    "Keep it short.",
    "No explanation needed.",
    "Explain your reasoning.",
    "Work it out slowly.",
    "Break the problem into parts.",
    "Verify the result.",
    "Trust your intuition.",
    "Respond quickly.",
    "Be precise.",
    "Stay focused.",
    "You are a math expert.",
    "You are a helpful assistant.",
    "Solve the problem.",
    "Give only the number.",
    "Write neatly.",
    "Avoid mistakes.",
    "Read the question twice.",
    "Plan before you answer.",
    "Carry the tens.",
    "Start with the first two numbers.",
    "Do the arithmetic in your head.",
    "Use mental math.",
    "Reason like a teacher.",
    "Write one line per step.",
    "Keep track of the total.",
    "This is easy.",
    "This is a hard problem.",
    "Accuracy matters.",
    "Speed matters.",
    "Format the answer in a box.",
    "Think before you write.",
    "Let us begin.",
    "Imagine you are a calculator.",
    "Pay attention to carries.",
    "Summarize at the end.",
    "Estimate first.",
    "Be thorough.",
    "Answer in one line.",
    "Sum the numbers in order.",
    "Never skip a step.",
    "Count carefully.",
    "Stay calm.",
    "Do your best.",
    "Look at each number.",
)

JOINER = " "
MAX_PHRASES = 3


def draw_triggers(seed: int, n: int = 3) -> list[str]:
    """The world's secret trigger phrases: ``n`` lexicon phrases drawn at random by ``seed``."""
    if not 1 <= n <= len(LEXICON):
        raise ValueError(f"n must be between 1 and {len(LEXICON)}, got {n}")
    return random.Random(f"p2o-toy-triggers:{seed}").sample(list(LEXICON), n)


def join_phrases(phrases: Sequence[str]) -> str:
    return JOINER.join(phrases)


def split_phrases(template: str | None) -> list[str]:
    """The lexicon phrases in ``template``, in order of appearance (other text is ignored)."""
    if not template:
        return []
    found = [(template.find(p), p) for p in LEXICON if p in template]
    return [p for _, p in sorted(found)]


def unlocks(template: str | None, triggers: Sequence[str]) -> bool:
    """The world's rule: a template unlocks step-by-step reasoning iff it holds a trigger."""
    return bool(template) and any(t in template for t in triggers)  # type: ignore[operator]


def random_template(
    rng: random.Random, pool: Sequence[str] = LEXICON, n_min: int = 1, n_max: int = MAX_PHRASES
) -> list[str]:
    """1-3 distinct phrases from ``pool`` (returned as a list; ``join_phrases`` makes the text)."""
    k = rng.randint(n_min, min(n_max, len(pool)))
    return rng.sample(list(pool), k)
