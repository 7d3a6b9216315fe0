"""The toy world: a tiny model whose step-by-step reasoning a good instruction unlocks.

``init_world(DIR, seed)`` writes::

    DIR/model/                 pretrained tiny Qwen3 + char tokenizer (Hugging Face layout)
    DIR/train.jsonl            problem records (mostly hard) for RL
    DIR/dev.jsonl              problem records, same mix, for validation
    DIR/bench/toy-easy.jsonl   held-out benchmarks ({idx, id, problem, answer, source_id}),
    DIR/bench/toy-hard.jsonl   read by ``p2o eval --bench toy-hard --data-dir DIR/bench``
    DIR/world.json             the secret: seed, trigger phrases and strengths, sizes, pretrain
                               stats, measured numbers

Only pretraining and :func:`measure_world` read the trigger phrases; the RL loop, the search
and the toy reflector never do (they see the public lexicon at most).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import P2OError
from ..files.outputs import atomic_path
from ..files.records import Problem, write_json, write_records
from .lexicon import LEXICON, draw_strengths, draw_triggers, join_phrases
from .tasks import has_steps, make_problems, operand_keys, starts_with_step

SCHEMA = "toy-world@1"
ACTING = ("trigger:", "partial:")  # measurement rows of the phrases that act (triggers, partial synonyms)
BENCH_NAMES = ("toy-easy", "toy-hard")
MODEL_DIR, TRAIN, DEV, BENCH_DIR, WORLD = "model", "train.jsonl", "dev.jsonl", "bench", "world.json"

Log = Callable[[str], None]


@dataclass
class WorldInfo:
    dir: Path
    seed: int
    triggers: list[str]
    strengths: dict[str, float]
    sizes: dict[str, int]
    pretrain: dict[str, Any]
    measured: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        return self.dir / MODEL_DIR


@dataclass
class Splits:
    train: list[Problem]
    dev: list[Problem]
    bench: dict[str, list[Problem]]


def split_sizes(n_train: int, n_dev: int, n_bench: int, easy_frac: float) -> dict[str, int]:
    n_train_easy = round(n_train * easy_frac)
    n_dev_easy = round(n_dev * easy_frac)
    return {
        "train_hard": n_train - n_train_easy,
        "train_easy": n_train_easy,
        "dev_hard": n_dev - n_dev_easy,
        "dev_easy": n_dev_easy,
        "bench_hard": n_bench,
        "bench_easy": n_bench,
    }


def make_splits(seed: int, sizes: dict[str, int]) -> Splits:
    """Benchmarks first, then dev, then train, as ranges of one problem sequence per kind.

    The benchmark ids therefore stay the same whatever the train/dev sizes.
    """
    parts: dict[str, dict[str, list[Problem]]] = {}
    for kind in ("easy", "hard"):
        nb, nd, nt = sizes[f"bench_{kind}"], sizes[f"dev_{kind}"], sizes[f"train_{kind}"]
        seq = make_problems(seed, kind, nb + nd + nt)
        parts[kind] = {"bench": seq[:nb], "dev": seq[nb : nb + nd], "train": seq[nb + nd :]}
    rng = random.Random(f"p2o-toy-splits:{seed}")
    train = parts["hard"]["train"] + parts["easy"]["train"]
    dev = parts["hard"]["dev"] + parts["easy"]["dev"]
    rng.shuffle(train)
    rng.shuffle(dev)
    return Splits(train, dev, {"toy-easy": parts["easy"]["bench"], "toy-hard": parts["hard"]["bench"]})


def bench_rows(problems: Sequence[Problem]) -> list[dict[str, Any]]:
    """The shared benchmark layout ({idx, problem, answer, source_id}) plus the stable id."""
    return [
        {"idx": i, "id": p.id, "problem": p.problem, "answer": p.answer, "source_id": p.id}
        for i, p in enumerate(problems)
    ]


def read_world(world_dir: str | Path) -> dict[str, Any]:
    path = Path(world_dir) / WORLD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (not a toy world directory; run p2o toy init)")
    return orjson.loads(path.read_bytes())


def world_strengths(world: Mapping[str, Any]) -> dict[str, float]:
    """Every acting phrase and its strength (worlds written before strengths: all 1.0)."""
    return dict(world.get("strengths") or dict.fromkeys(world["triggers"], 1.0))


def world_record(seed: int, triggers: list[str], strengths: dict[str, float], sizes: dict[str, Any],
                 pretrain_info: dict[str, Any]) -> dict[str, Any]:
    """world.json: what the world is made of and how its model was trained (measured: later)."""
    return {
        "schema": SCHEMA,
        "seed": seed,
        "triggers": triggers,
        "strengths": strengths,
        "partials": [p for p in strengths if p not in triggers],
        "lexicon_size": len(LEXICON),
        "rule": "a template (1-3 lexicon phrases joined by a space) makes the model open with "
        "step-by-step reasoning with the probability of the strongest acting phrase it holds",
        "sizes": sizes,
        "files": {"model": MODEL_DIR, "train": TRAIN, "dev": DEV,
                  **{name: f"{BENCH_DIR}/{name}.jsonl" for name in BENCH_NAMES}},
        "pretrain": pretrain_info,
        "measured": None,
    }


def init_world(
    out_dir: str | Path,
    seed: int = 0,
    n_train: int = 320,
    n_dev: int = 80,
    n_bench: int = 128,
    easy_frac: float = 0.2,
    n_triggers: int = 3,
    trigger_levels: Sequence[float] | None = None,
    pretrain_config: Any = None,
    measure: bool = True,
    measure_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
    log: Log | None = None,
    log_every: int | None = None,
    n_probe: int = 64,
    allow_weak: bool = False,
) -> WorldInfo:
    """Build the toy world in ``out_dir`` (written atomically; deterministic for ``seed``).

    ``trigger_levels``: None draws a graded mix per trigger (see :mod:`.lexicon`); ``[1.0]`` is
    the all-or-nothing world. A measured world that misses a target (:func:`missed_targets`) is
    not written (:class:`WeakWorldError`) unless ``allow_weak``."""
    from .pretrain import pretrain
    from .pretrain_config import PretrainConfig
    from .probe import probe_set, strongest_phrase
    from .tiny import char_tokenizer, tiny_qwen3

    say = log or (lambda _msg: None)
    start = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite / --force to replace it)")
    cfg = pretrain_config if pretrain_config is not None else PretrainConfig(seed=seed)
    triggers = draw_triggers(seed, n_triggers)
    strengths = draw_strengths(seed, triggers, trigger_levels)
    sizes = split_sizes(n_train, n_dev, n_bench, easy_frac)
    splits = make_splits(seed, sizes)
    held_out = operand_keys(splits.train + splits.dev + [p for ps in splits.bench.values() for p in ps])

    tok = char_tokenizer(words=cfg.words())
    model = tiny_qwen3(tok, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                       num_kv_heads=cfg.num_kv_heads, intermediate_size=cfg.intermediate_size, seed=seed)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"pretraining a {n_params / 1e6:.2f}M-parameter Qwen3 for {cfg.steps} steps on {cfg.threads} thread(s)")
    probes = [probe_set("easy", tok, splits.bench["toy-easy"][:n_probe], None, skip_decision=False),
              probe_set("hard-steps", tok, splits.bench["toy-hard"][:n_probe], strongest_phrase(strengths),
                        skip_decision=True)]
    stats = pretrain(
        model,
        tok,
        strengths,
        cfg,
        exclude=held_out,
        log_every=log_every or max(1, cfg.steps // 16),
        log=lambda e: say(f"  step {e['step']:>5}  loss {e['loss']:.4f}  {e['seconds']:.0f}s  threads {e['threads']}"
                          + "".join(f"  {k} {v:.2f}" for k, v in e.get("probe", {}).items())),
        probes=probes,
    )
    pretrain_info = {"config": cfg.to_json(), **stats}

    with atomic_path(out, kind="dir", replace_any=overwrite) as tmp:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp / MODEL_DIR)
        tok.save_pretrained(tmp / MODEL_DIR)
        write_records(tmp / TRAIN, splits.train)
        write_records(tmp / DEV, splits.dev)
        for name, problems in splits.bench.items():
            write_records(tmp / BENCH_DIR / f"{name}.jsonl", bench_rows(problems))
        world = world_record(seed, triggers, strengths, sizes, pretrain_info)
        write_json(tmp / WORLD, world)
        measured = None
        if measure:
            say("measuring the world (real HF engine, real reward)")
            kwargs = {"threads": stats["threads"], **(measure_kwargs or {})}
            measured = measure_world(tmp, log=log, **kwargs)
            missed = missed_targets(measured)
            if missed and not allow_weak:
                # the advice first: a long list of misses is cut to fit one line
                raise WeakWorldError(f"the world of seed {seed} misses {len(missed)} target(s), so it was not "
                                     "written (try another --seed, or --allow-weak to keep it for study): "
                                     + short_misses(missed))
            world = {**read_world(tmp), "build_seconds": round(time.perf_counter() - start, 1)}
            write_json(tmp / WORLD, world)
    return WorldInfo(out, seed, triggers, strengths, sizes, pretrain_info, measured, dict(world["files"]))


# ---------------------------------------------------------------- measurement


def _pass_at(n: int, correct: Sequence[Sequence[bool]]) -> float:
    """pass@n from exactly n samples per problem: the share of problems with a correct one."""
    return sum(any(row[:n]) for row in correct) / max(len(correct), 1)


def _summary(responses: Sequence[Sequence[str]], rewards: Sequence[Sequence[float]], n: int) -> dict[str, Any]:
    correct = [[r > 0 for r in row] for row in rewards]
    flat = [x for row in correct for x in row]
    texts = [t for row in responses for t in row]
    return {
        f"pass@{n}": _pass_at(n, correct),
        "accuracy": sum(flat) / max(len(flat), 1),
        "step_start": sum(starts_with_step(t) for t in texts) / max(len(texts), 1),
        "has_steps": sum(has_steps(t) for t in texts) / max(len(texts), 1),
        "n_problems": len(correct),
        "samples": len(flat),
    }


def step_start_prob(
    model: Any, tokenizer: Any, prompts: Sequence[str], temperatures: Sequence[float] = (1.0, 0.6), batch_size: int = 64
) -> dict[str, float]:
    """Mean probability that the first response token opens a step line (a digit).

    The exact next-token probability, not a sample estimate: under the plain prompt it is the
    base rate at which the model starts reasoning unprompted, per sampling temperature.
    """
    import torch

    digits = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    pad = tokenizer.pad_token_id
    sums = dict.fromkeys(temperatures, 0.0)
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start : start + batch_size]]
            width = max(map(len, ids))
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            attention = torch.zeros_like(input_ids)
            for row, seq in enumerate(ids):  # left padding: the last position is the prompt's end
                input_ids[row, width - len(seq) :] = torch.tensor(seq)
                attention[row, width - len(seq) :] = 1
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, -1].float()
            for t in temperatures:
                sums[t] += float(torch.softmax(logits / t, dim=-1)[:, digits].sum())
    return {f"T={t:g}": sums[t] / max(len(prompts), 1) for t in temperatures}


def _measure_prompt(engine: Any, scorer: Any, problems: Sequence[Problem], template: str | None, *, n: int,
                    temperature: float, max_new_tokens: int, seed: int) -> dict[str, Any]:
    """n samples per problem under one template (None = plain), scored and summarised."""
    from ..data.prompts import PromptConfig, render

    prompts = [render(engine.tokenizer, p.problem, template, PromptConfig()) for p in problems]
    outs = engine.generate(prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    texts = [[c.text for c in row] for row in outs]
    scores = iter(scorer.score([t for row in texts for t in row],
                               [p.answer for p, row in zip(problems, texts) for _ in row]))
    rewards = [[next(scores).reward for _ in row] for row in texts]
    return _summary(texts, rewards, n)


def measure_world(
    world_dir: str | Path,
    n: int = 6,
    temperature: float = 1.0,
    max_new_tokens: int = 128,
    limit: int | None = None,
    n_control: int = 2,
    batch_size: int = 64,
    seed: int = 0,
    threads: int = 1,
    write: bool = True,
    log: Log | None = None,
) -> dict[str, Any]:
    """Plain and per-trigger pass@n / accuracy on the toy benchmarks; written into world.json.

    Uses the real HF engine and the real reward. ``step_start`` is the share of samples whose
    first line is a step (``a + b = c``): under the plain prompt, the base rate at which the
    model reasons unprompted. ``control`` rows use random non-trigger templates.
    """
    import torch

    from ..data.problems import load_problems
    from ..data.prompts import PromptConfig, render
    from ..engines.hf import HFEngine
    from ..reward.pool import RewardScorer

    say = log or (lambda _msg: None)
    root = Path(world_dir)
    world = read_world(root)
    strengths = world_strengths(world)
    torch.set_num_threads(threads)
    engine = HFEngine(str(root / MODEL_DIR), device="cpu", batch_size=batch_size)
    tok = engine.tokenizer
    cfg = PromptConfig()
    bench = {
        name: load_problems(str(root / BENCH_DIR / f"{name}.jsonl"), limit=limit) for name in BENCH_NAMES
    }
    rng = random.Random(f"p2o-toy-control:{world['seed']}")
    others = [p for p in LEXICON if p not in strengths]
    controls = [join_phrases(rng.sample(others, rng.randint(1, 2))) for _ in range(n_control)]
    runs: list[tuple[str, str, str | None]] = [("plain", "toy-easy", None), ("plain", "toy-hard", None)]
    runs += [(f"{'trigger' if t in world['triggers'] else 'partial'}:{t}", "toy-hard", t) for t in strengths]
    runs += [(f"control:{c}", "toy-hard", c) for c in controls]
    start = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    with RewardScorer(timeout_s=5.0, workers=1) as scorer:
        for label, bench_name, template in runs:
            summary = _measure_prompt(engine, scorer, bench[bench_name], template, n=n, temperature=temperature,
                                      max_new_tokens=max_new_tokens, seed=seed)
            summary.update(bench=bench_name, template=template, strength=strengths.get(template or "", 0.0))
            rows[f"{label}@{bench_name}"] = summary
            say(
                f"  {label[:48]:<48} {bench_name:<9} pass@{n} {summary[f'pass@{n}']:.3f}  "
                f"acc {summary['accuracy']:.3f}  step-start {summary['step_start']:.3f}"
                + (f" (strength {summary['strength']:g})" if template in strengths else "")
            )
        # toy-easy as p2o eval scores it (greedy): can the world add?
        easy_greedy = _measure_prompt(engine, scorer, bench["toy-easy"], None, n=1, temperature=0.0,
                                      max_new_tokens=max_new_tokens, seed=seed)
        say(f"  {'plain, greedy':<48} {'toy-easy':<9} acc {easy_greedy['accuracy']:.3f}")
    plain_prompts = [render(tok, p.problem, None, cfg) for p in bench["toy-hard"]]
    step_prob = step_start_prob(engine.model, tok, plain_prompts)
    say("  P(first token opens a step | plain toy-hard): " + ", ".join(f"{k} {v:.4f}" for k, v in step_prob.items()))
    best_key = max(
        (k for k in rows if k.startswith(ACTING)), key=lambda k: (rows[k][f"pass@{n}"], rows[k]["accuracy"])
    )
    measured = {
        "temperature": temperature,
        "n": n,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "limit": limit,
        "seconds": round(time.perf_counter() - start, 1),
        "plain_hard": rows["plain@toy-hard"],
        "plain_hard_step_start_prob": step_prob,
        "plain_easy": rows["plain@toy-easy"],
        "plain_easy_greedy": easy_greedy,
        "best_template": {"text": rows[best_key]["template"], **rows[best_key]},
        "runs": rows,
    }
    if write:
        world["measured"] = measured
        write_json(root / WORLD, world)
    return measured


# A world is worth running P²O on when plain prompts rarely solve hard problems and a trigger
# template often does (pass@n over the toy-hard benchmark); each acting phrase should open with
# a step at its strength (measured at T=1, where sampling follows the model's own distribution).
EASY_GREEDY_MIN = 0.85
PLAIN_HARD_PASS_MAX = 0.10
BEST_TEMPLATE_PASS_MIN = 0.50
PLAIN_STEP_START_MAX = 0.01
STRENGTH_TOLERANCE = 0.10


class WeakWorldError(P2OError):
    """A world whose measurement misses a target: P²O on it would measure pretraining, not P²O."""


def short_misses(missed: Sequence[str]) -> str:
    """The lines of :func:`missed_targets` without their explanations, joined: for one line."""
    return "; ".join(line.split(":")[0] for line in missed)


def missed_targets(measured: dict[str, Any]) -> list[str]:
    """One line per world target the measurement misses (empty when the world is usable)."""
    n = measured["n"]
    plain, best = measured["plain_hard"][f"pass@{n}"], measured["best_template"][f"pass@{n}"]
    missed = []
    easy = measured.get("plain_easy_greedy")  # worlds measured before it was
    if easy is not None and easy["accuracy"] < EASY_GREEDY_MIN:
        missed.append(f"toy-easy greedy accuracy is {100 * easy['accuracy']:.1f}% (target >= "
                      f"{100 * EASY_GREEDY_MIN:.0f}%): pretraining did not learn to add")
    if plain >= PLAIN_HARD_PASS_MAX:
        missed.append(f"plain toy-hard pass@{n} is {100 * plain:.1f}% (target < {100 * PLAIN_HARD_PASS_MAX:.0f}%): "
                      "hard problems are not hard")
    if best < BEST_TEMPLATE_PASS_MIN:
        missed.append(f"best template toy-hard pass@{n} is {100 * best:.1f}% (target >= "
                      f"{100 * BEST_TEMPLATE_PASS_MIN:.0f}%): pretraining did not learn to add step by step")
    plain_start = measured["plain_hard"]["step_start"]
    if plain_start > PLAIN_STEP_START_MAX:
        missed.append(f"plain toy-hard opens with a step in {100 * plain_start:.1f}% of samples "
                      f"(target <= {100 * PLAIN_STEP_START_MAX:.0f}%)")
    if measured["temperature"] == 1.0:
        for label, row in measured["runs"].items():
            strength = row.get("strength")
            if label.startswith(ACTING) and strength and abs(row["step_start"] - strength) > STRENGTH_TOLERANCE:
                missed.append(f"{row['template']!r} opens with a step in {100 * row['step_start']:.0f}% of samples, "
                              f"its strength is {100 * strength:.0f}% (tolerance ±{100 * STRENGTH_TOLERANCE:.0f})")
    return missed
