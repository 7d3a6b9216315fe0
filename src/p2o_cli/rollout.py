"""K scored rollouts per problem, with assigned templates where there are any."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .engines import Engine, ProgressFn
from .prompts import PromptConfig, render
from .records import Assignment, Problem, Rollout, Template

if TYPE_CHECKING:
    from .reward import RewardScorer


@dataclass
class RolloutConfig:
    k: int = 6
    temperature: float = 0.6
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 0
    policy_version: int = 0
    model: str | None = None  # recorded in each rollout (and from there in hard records)
    prompt: PromptConfig = field(default_factory=PromptConfig)


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


def check_assignments(assignments: Mapping[str, Assignment], templates: Mapping[str, Template]) -> None:
    """Every assigned template id must exist (raises ValueError naming the first that does not)."""
    for assignment in assignments.values():
        if not assignment.template_ids:
            raise ValueError(f"assignment for {assignment.id!r} has no template ids")
        for template_id in assignment.template_ids:
            if template_id not in templates:
                raise ValueError(f"assignment for {assignment.id!r} names unknown template {template_id!r}")


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
    results = scorer.score([c.text for c in completions], [r.problem.answer for r in requests])
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
        )
        for request, completion, result in zip(requests, completions, results)
    ]
