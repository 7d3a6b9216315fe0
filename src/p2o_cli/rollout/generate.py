"""K scored rollouts per problem, with assigned templates where there are any."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import MAX_NEW_TOKENS, Config, internal, k_option, option, section, seed_option, temperature_option
from ..data.prompts import PromptConfig, render
from ..engines import Engine, ProgressFn
from ..errors import P2OError
from ..files.faults import fault
from ..files.records import Assignment, Problem, Rollout, Template, problem_fields

if TYPE_CHECKING:
    from ..reward.pool import RewardScorer


@dataclass
class RolloutConfig(Config):
    PANEL = "Rollout"

    k: int = k_option()
    temperature: float = temperature_option()
    top_p: float = option(1.0, above=0.0, max=1.0, help="Nucleus sampling mass.")
    max_new_tokens: int = option(MAX_NEW_TOKENS, min=1, help="Longest response, in tokens.")
    seed: int = seed_option()
    policy_version: int = internal(0)  # recorded in each rollout: the train step that sampled it
    model: str | None = internal(None)  # recorded in each rollout (and from there in hard records)
    prompt: PromptConfig = section(PromptConfig, shared=True)


@dataclass
class _Request:
    problem: Problem
    k: int
    template: Template | None
    prompt: str
    original_prompt: str
    plain_rewards: list[float] | None = None


def plan_requests(
    problems: Sequence[Problem],
    tokenizer: Any,
    cfg: RolloutConfig,
    assignments: Mapping[str, Assignment] | None = None,
    templates: Mapping[str, Template] | None = None,
) -> list[_Request]:
    """One request per rollout, K per problem; an assigned problem gets one template per rollout."""
    assignments = assignments or {}
    templates = templates or {}
    requests: list[_Request] = []
    for problem in problems:
        plain = render(tokenizer, problem.problem, None, cfg.prompt)
        assignment = assignments.get(problem.id)
        for k in range(cfg.k):
            template = None
            if assignment is not None:
                template_id = assignment.template_ids[k % len(assignment.template_ids)]
                template = templates[template_id]
            prompt = render(tokenizer, problem.problem, template.text, cfg.prompt) if template else plain
            plain_rewards = (list(assignment.plain_rewards) or None) if template and assignment else None
            requests.append(_Request(problem, k, template, prompt, plain, plain_rewards))
    return requests


def check_assignments(
    assignments: Mapping[str, Assignment],
    templates: Mapping[str, Template],
    problems: Sequence[Problem] | None = None,
    k: int | None = None,
) -> None:
    """Assignments must fit what is rolled out (ValueError naming the first that does not).

    Every assigned template id must exist; with ``problems``, every assignment must name one
    of them; with ``k``, each must carry exactly ``k`` template ids (one per rollout).
    """
    known = {p.id for p in problems} if problems is not None else None
    for assignment in assignments.values():
        if not assignment.template_ids:
            raise P2OError(f"assignment for {assignment.id!r} has no template ids")
        if known is not None and assignment.id not in known:
            raise P2OError(f"assignment for {assignment.id!r} names no problem of the input")
        if k is not None and len(assignment.template_ids) != k:
            raise P2OError(
                f"assignment for {assignment.id!r} has {len(assignment.template_ids)} template ids; --k is {k}"
            )
        for template_id in assignment.template_ids:
            if template_id not in templates:
                raise P2OError(f"assignment for {assignment.id!r} names unknown template {template_id!r}")


def generate_rollouts(
    engine: Engine,
    tokenizer: Any,
    problems: Sequence[Problem],
    cfg: RolloutConfig,
    scorer: RewardScorer,
    assignments: Mapping[str, Assignment] | None = None,
    templates: Mapping[str, Template] | None = None,
    progress: ProgressFn | None = None,
) -> list[Rollout]:
    """Sample, score and return ``len(problems) * k`` rollout records in problem order."""
    requests = plan_requests(problems, tokenizer, cfg, assignments, templates)
    # Identical prompts (every untemplated rollout of a problem) share one engine request with n>1.
    unique: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        unique.setdefault(request.prompt, []).append(index)
    prompts = list(unique)
    by_n: dict[int, list[str]] = {}
    for prompt in prompts:
        by_n.setdefault(len(unique[prompt]), []).append(prompt)
    completions: list[Any] = [None] * len(requests)
    for n, group in sorted(by_n.items()):
        outputs = engine.generate(
            group,
            n=n,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed + n,
            progress=progress,
        )
        for prompt, samples in zip(group, outputs):
            for index, sample in zip(unique[prompt], samples):
                completions[index] = sample
    fault("rollout")  # reliability tests: killed between generation and scoring
    fields = {id(p): problem_fields(p) for p in problems}
    results = scorer.score([c.text for c in completions], [fields[id(r.problem)] for r in requests])
    return [
        Rollout(
            id=request.problem.id,
            k=request.k,
            prompt=request.prompt,
            response=completion.text,
            reward=result.reward,
            pred=result.pred,
            finish_reason=completion.finish_reason,
            n_tokens=completion.n_tokens,
            template_id=request.template.template_id if request.template else None,
            template=request.template.text if request.template else None,
            policy_version=cfg.policy_version,
            original_prompt=request.original_prompt if request.template else None,
            problem=request.problem.problem,
            answer=request.problem.answer,
            response_ids=completion.token_ids,
            plain_rewards=request.plain_rewards,
            temperature=cfg.temperature,
            model=cfg.model,
            rewards=result.components,
            meta=request.problem.meta,
            source=request.problem.source,
        )
        for request, completion, result in zip(requests, completions, results)
    ]
