"""The paper's training sets as recipes: `p2o data prepare deepscaler-5k | deepmath-5k`.

A recipe is a source (hub id or a local copy of it), an optional row filter, a size and a seed.
The result is a problem-records JSONL plus a sidecar JSON that records how it was made and the
sha256 of the file, so two people who ran the same recipe can compare one line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import P2OError
from ..files.records import write_json, write_records
from .problems import load_problems
from .selection import parse_filter


@dataclass(frozen=True)
class Recipe:
    name: str
    hub_id: str
    filter: str | None
    count: int
    about: str


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("deepscaler-5k", "agentica-org/DeepScaleR-Preview-Dataset", None, 5000,
               "a random 5,000 of DeepScaleR-Preview (P²O §4.1)"),
        Recipe("deepmath-5k", "zwhe99/DeepMath-103K", "difficulty>=7", 5000,
               "5,000 of DeepMath-103K with difficulty >= 7 (P²O §4.1)"),
    )
}


@dataclass(frozen=True)
class Prepared:
    path: Path
    sidecar: Path
    recipe: dict[str, Any]  # what the sidecar holds


def sidecar_path(out: str | Path) -> Path:
    """``deepmath-5k.jsonl`` -> ``deepmath-5k.recipe.json``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".recipe.json")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(
    name: str, out: str | Path, *, source: str | None = None, seed: int = 0, count: int | None = None,
    split: str = "train",
) -> Prepared:
    """Write recipe ``name`` from ``source`` (default: its hub id) to ``out`` and its sidecar.

    Rows passing the recipe's filter are sampled with ``seed`` (all of them when fewer than
    ``count`` pass; the sidecar then shows ``count`` below ``requested``). The filter's field is
    kept in each problem's ``meta`` so the result can be checked against the recipe.
    """
    recipe = RECIPES.get(name)
    if recipe is None:
        raise P2OError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    requested = recipe.count if count is None else count
    if requested < 1:
        raise P2OError(f"--count must be at least 1, got {requested}")
    row_filter = parse_filter(recipe.filter) if recipe.filter else None
    source = source or recipe.hub_id
    problems = load_problems(source, split=split, row_filter=row_filter, sample=requested, sample_seed=seed,
                             keep_fields=(row_filter.field,) if row_filter else ())
    if not problems:
        raise P2OError(f"{source}: no rows pass {recipe.filter}")
    out = Path(out)
    write_records(out, problems)
    local = Path(source).is_file()
    sidecar = {
        "schema": "recipe@1",
        "recipe": recipe.name,
        "about": recipe.about,
        "source": source,
        "source_sha256": file_sha256(source) if local else None,
        "split": None if local else split,
        "filter": recipe.filter,
        "seed": seed,
        "requested": requested,
        "count": len(problems),
        "file": out.name,
        "sha256": file_sha256(out),
    }
    write_json(sidecar_path(out), sidecar)
    return Prepared(out, sidecar_path(out), sidecar)
