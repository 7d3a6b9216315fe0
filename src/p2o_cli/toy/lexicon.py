"""The toy world's public lexicon of instruction phrases, and the secret trigger draw.

A toy *template* is 1-3 lexicon phrases joined by one space. The world's seed picks a few
*trigger* phrases at random from the whole lexicon, each with a *strength*: the probability
that a template holding it makes the model open with step-by-step reasoning. In the graded
world (the default) strengths are drawn from :data:`STRENGTH_LEVELS` and each trigger has a
*partial synonym*, another phrase at half its strength, so a search that stumbles on a weak
phrase sees some lift and has a gradient to climb. ``strength 1.0`` is the all-or-nothing
world: three triggers that always switch reasoning on, no partial phrases. A template's
strength is the strongest phrase it holds.

Which phrases act, and how strongly, is written only to the toy directory's ``world.json``
(read by pretraining and by the measurement); nothing in the search or the reflector knows
it, and the draw ignores how "reasoning-flavoured" a phrase sounds.
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


STRENGTH_LEVELS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
PARTIAL_FACTOR = 0.5  # a partial synonym acts at this fraction of its trigger's strength


def parse_strength(spec: str) -> list[float] | None:
    """``"mix"`` -> None (drawn per trigger by the seed); ``"0.5"`` -> one level for every
    trigger; ``"0.25,1"`` -> one level per trigger, in draw order. Raises ValueError."""
    if spec.strip().lower() == "mix":
        return None
    try:
        levels = [float(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"trigger strength must be 'mix' or numbers in (0, 1] separated by commas, "
                         f"got {spec!r}") from None
    if not levels or any(not 0.0 < x <= 1.0 for x in levels):
        raise ValueError(f"trigger strengths must lie in (0, 1], got {spec!r}")
    return levels


def draw_strengths(seed: int, triggers: Sequence[str], levels: Sequence[float] | None) -> dict[str, float]:
    """Every acting phrase and its strength: the triggers, then (graded worlds) their partial
    synonyms, drawn from the phrases that are not triggers."""
    rng = random.Random(f"p2o-toy-strengths:{seed}")
    if levels is None:
        # Each level at most once while there are levels left, so a world always mixes them.
        drawn = rng.sample(list(STRENGTH_LEVELS), min(len(triggers), len(STRENGTH_LEVELS)))
        chosen = drawn + [rng.choice(STRENGTH_LEVELS) for _ in triggers[len(drawn):]]
    elif len(levels) == 1:
        chosen = [levels[0]] * len(triggers)
    elif len(levels) == len(triggers):
        chosen = list(levels)
    else:
        raise ValueError(f"{len(levels)} trigger strengths given for {len(triggers)} triggers")
    strengths = dict(zip(triggers, chosen))
    if all(x == 1.0 for x in chosen):
        return strengths  # the all-or-nothing world has no partial phrases
    others = [p for p in LEXICON if p not in strengths]
    for trigger, partial in zip(triggers, rng.sample(others, len(triggers))):
        strengths[partial] = round(PARTIAL_FACTOR * strengths[trigger], 4)
    return strengths


def template_strength(template: str | None, strengths: dict[str, float]) -> float:
    """The probability a template switches step-by-step reasoning on: its strongest phrase's."""
    if not template:
        return 0.0
    return max((level for phrase, level in strengths.items() if phrase in template), default=0.0)


def join_phrases(phrases: Sequence[str]) -> str:
    return JOINER.join(phrases)


def split_phrases(template: str | None) -> list[str]:
    """The lexicon phrases in ``template``, in order of appearance (other text is ignored)."""
    if not template:
        return []
    found = [(template.find(p), p) for p in LEXICON if p in template]
    return [p for _, p in sorted(found)]


def unlocks(template: str | None, triggers: Sequence[str]) -> bool:
    """Whether a template holds a trigger (in the all-or-nothing world: whether it unlocks
    step-by-step reasoning)."""
    return bool(template) and any(t in template for t in triggers)  # type: ignore[operator]


def random_template(
    rng: random.Random, pool: Sequence[str] = LEXICON, n_min: int = 1, n_max: int = MAX_PHRASES
) -> list[str]:
    """1-3 distinct phrases from ``pool`` (returned as a list; ``join_phrases`` makes the text)."""
    k = rng.randint(n_min, min(n_max, len(pool)))
    return rng.sample(list(pool), k)
