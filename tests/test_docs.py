"""README and the documentation site: short, current, and true to the code.

The references in them (options, commands, make targets, repository files, test names) must
exist, and the command lines of the "your model on one GPU" path run on CPU with a tiny model,
read from the very blocks the pages show.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson
import pytest
import typer.main
from typer.testing import CliRunner

from helpers import ENV
from p2o_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, REPO / "examples" / "accelerate" / "README.md", *sorted(DOCS.rglob("*.md"))]

# Options of programs other than p2o that the pages show, by program. A flag of a repository
# script is checked against the script itself instead.
EXTERNAL_OPTIONS = {
    "accelerate launch": {"--multi_gpu", "--num_processes", "--num_machines", "--machine_rank", "--config_file",
                          "--mixed_precision", "--dynamo_backend", "--cpu", "--main_process_ip"},
    "torchrun": {"--nproc-per-node"},
    "vllm serve": {"--served-model-name", "--port"},
    "tensorboard": {"--logdir"},
    "mkdocs build": {"--strict"},
    "python -m venv": {"--system-site-packages"},
    "duplicates": {"--change", "--base"},
}
# Files of other projects that the pages name (the Qwen2.5-Math evaluation suite).
EXTERNAL_FILES = {"evaluation/parser.py", "evaluation/grader.py"}
REPO_ROOTS = ("src/", "tests/", "examples/", "benchmarks/", "docs/", ".ci/", "locks/")
TOP_FILES = ("Makefile", "pyproject.toml", "README.md", "mkdocs.yml", "CHANGELOG.md", "LICENSE")


# ---------------------------------------------------------------- reading the pages


def code_of(text: str) -> tuple[list[str], list[str]]:
    """(command lines of fenced blocks, continuation lines joined; inline code spans)."""
    lines: list[str] = []

    def take_block(match: re.Match[str]) -> str:
        body = match.group(1).replace("\\\n", " ")
        lines.extend(line.strip().removeprefix("$ ") for line in body.splitlines() if line.strip())
        return ""

    prose = re.sub(r"^```[^\n]*\n(.*?)^```", take_block, text, flags=re.S | re.M)
    spans = [m.group(2).replace("\n", " ") for m in re.finditer(r"(`+)(.+?)\1", prose, flags=re.S)]
    return lines, spans


def fenced_block(path: Path, name: str) -> str:
    """The fenced block that follows ``<!-- docs-test: NAME -->`` in ``path``."""
    match = re.search(rf"<!-- docs-test: {re.escape(name)} -->\n```[^\n]*\n(.*?)^```", path.read_text(),
                      flags=re.S | re.M)
    assert match, f"{path.name}: no block marked docs-test: {name}"
    return match.group(1)


def commands_of(block: str) -> list[list[str]]:
    """The p2o command lines of a shell block, as argument lists (comments dropped)."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        args = shlex.split(line, comments=True)
        if args:
            assert args[0] == "p2o", f"only p2o commands are run from the pages: {line}"
            commands.append(args)
    return commands


def p2o_commands() -> dict[tuple[str, ...], set[str]]:
    """Every p2o command path (``()`` for the top level, ``("toy", "init")``…) and its flags."""
    found: dict[tuple[str, ...], set[str]] = {}

    def walk(command, path: tuple[str, ...]) -> None:
        found[path] = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", (REPO / "Makefile").read_text(), flags=re.M))


def defined_tests() -> set[str]:
    return {name for p in (REPO / "tests").glob("*.py") for name in re.findall(r"def (test_\w+)", p.read_text())}


def flags_in(text: str) -> list[str]:
    return re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*\*?", text)


# ---------------------------------------------------------------- what a flag may be


def segments(page: Path) -> Iterator[str]:
    """Each command of a page's code: fenced lines and inline spans, cut at pipes and separators."""
    lines, spans = code_of(page.read_text())
    for text in lines + spans:
        yield from (part.strip() for part in re.split(r"\||&&|;|(?<!\S)&(?!\S)", text))


def split_launcher(words: list[str]) -> tuple[list[str], list[str]]:
    """(the launcher's words, the p2o command's words from ``p2o`` on; either may be empty)."""
    if words[:1] == ["p2o"]:
        return [], words
    if "-m" in words and "p2o_cli" in words:  # accelerate launch … -m p2o_cli run …
        at = words.index("p2o_cli")
        return words[:at - 1], ["p2o", *words[at + 1:]]
    return words, []


def command_path(words: list[str], commands: dict[tuple[str, ...], set[str]]) -> tuple[str, ...]:
    path: tuple[str, ...] = ()
    for word in words[1:]:
        if (*path, word) not in commands:
            break
        path = (*path, word)
    return path


def allowed_flags(words: list[str], commands: dict[tuple[str, ...], set[str]], anywhere: set[str]) -> set[str]:
    """The flags a command may take: a p2o command its own, a repository script those in its source."""
    if words[:1] == ["p2o"]:
        path = command_path(words, commands)
        return commands[path] | commands[()] if path else anywhere
    if words and not Path(words[0]).is_absolute() and (REPO / words[0]).is_file():  # /usr/bin/time is no script
        script = REPO / words[0]
        sources = [s for s in (script, script.with_name(script.stem.replace("-", "_") + ".py")) if s.is_file()]
        return {f for f in flags_in(" ".join(words)) if any(f in s.read_text() for s in sources)}
    return anywhere


def test_pages_name_only_options_that_exist() -> None:
    commands = p2o_commands()
    anywhere = set().union(*commands.values(), *EXTERNAL_OPTIONS.values())
    bad = []
    for page in PAGES:
        for segment in segments(page):
            for words in split_launcher(segment.split()):
                allowed = allowed_flags(words, commands, anywhere)
                for flag in flags_in(" ".join(words)):
                    ok = any(o.startswith(flag[:-1]) for o in allowed) if flag.endswith("*") else flag in allowed
                    if not ok:
                        bad.append(f"{page.relative_to(REPO)}: {flag} in `{segment}`")
    assert not bad, "\n".join(bad)


def test_pages_name_only_commands_that_exist() -> None:
    commands = p2o_commands()

    def named(page: Path) -> Iterator[str]:
        for segment in segments(page):
            words = split_launcher(segment.split())[1]
            if len(words) > 1 and re.fullmatch(r"[a-z][a-z-]*", words[1]):  # not `p2o COMMAND`, `p2o --version`
                yield segment

    def exists(segment: str) -> bool:
        path = command_path(split_launcher(segment.split())[1], commands)
        return bool(path) and commands[path] != {"--help"}  # a group needs its subcommand

    bad = missing(named, exists)
    assert not bad, "p2o commands that do not exist:\n" + "\n".join(bad)


def missing(found: Callable[[Path], Iterable[str]], exists: Callable[[str], bool]) -> list[str]:
    """``page: item`` for every item a page names that does not exist."""
    return [f"{page.relative_to(REPO)}: {item}" for page in PAGES for item in found(page) if not exists(item)]


def code_chunks(page: Path) -> list[str]:
    lines, spans = code_of(page.read_text())
    return lines + spans


def test_pages_name_only_make_targets_that_exist() -> None:
    def named(page: Path) -> Iterator[str]:
        for text in code_chunks(page):
            for match in re.finditer(r"(?<![\w-])make((?: +[a-z][\w-]*(?![\w=]))+)", text):
                yield from match.group(1).split()

    bad = missing(named, make_targets().__contains__)
    assert not bad, "make targets that do not exist:\n" + "\n".join(bad)


@functools.cache
def generated_paths() -> frozenset[str]:
    """What the build writes and git ignores (benchmarks/.work, site …): named in the pages, absent in a clone."""
    lines = (REPO / ".gitignore").read_text().splitlines()
    return frozenset(line.strip("/") for line in lines if line.strip() and not line.startswith("#") and "*" not in line)


def repo_path_exists(token: str) -> bool:
    token = token.split("::")[0].rstrip(".,:;)")
    if any(c in token for c in "<{*…"):
        return True  # a pattern, not a path
    if token in EXTERNAL_FILES or token.rstrip("/") in generated_paths() or (REPO / token).exists():
        return True
    if token.endswith(".py") and "/" in token:
        return (REPO / "src" / "p2o_cli" / token).exists()
    if token.endswith(".py"):
        return any(p.name == token for root in ("src", "tests", "benchmarks", "examples")
                   for p in (REPO / root).rglob(token))
    return False


PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(map(re.escape, REPO_ROOTS))})[\w./-]*"
                  rf"|(?:{'|'.join(map(re.escape, TOP_FILES))})(?![\w.-])|[\w/-]+\.py(?:::\w+)?)")


def test_pages_name_only_files_that_exist() -> None:
    def named(page: Path) -> Iterator[str]:
        for chunk in code_chunks(page):
            yield from PATH.findall(chunk)
        if page == README:  # links; the site's own links are checked by mkdocs build --strict
            yield from re.findall(r"\]\(([^)#\s]+)", page.read_text())

    bad = missing(named, repo_path_exists)
    assert not bad, "repository files that do not exist:\n" + "\n".join(bad)


def test_pages_name_only_tests_that_exist() -> None:
    def named(page: Path) -> Iterator[str]:
        for span in code_of(page.read_text())[1]:
            yield from re.findall(r"(?<![\w/.])(test_\w+)(?![\w.])", span)

    bad = missing(named, defined_tests().__contains__)
    assert not bad, "tests that do not exist:\n" + "\n".join(bad)


def test_readme_is_a_front_door() -> None:
    assert len(README.read_text().splitlines()) <= 200
    for page in re.findall(r"\]\((docs/[^)#]+)", README.read_text()):
        assert (REPO / page).is_file(), page


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    missing = [str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in nav]
    assert not missing, f"add to mkdocs.yml's nav: {missing}"


# ---------------------------------------------------------------- the one-GPU path, on CPU

# What the GPU page says -> what the CPU test runs: the model, and sizes a tiny model finishes
# in seconds. Nothing else in the pages' command lines is changed.
ONE_GPU_SIZES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("Qwen/Qwen3-1.7B",): ("{model}",),
    ("--limit", "64"): ("--limit", "8"),
    ("--max-new-tokens", "4096"): ("--max-new-tokens", "8"),
    ("--eval-max-new-tokens", "4096"): ("--eval-max-new-tokens", "8"),
    ("--gepa-max-new-tokens", "4096"): ("--gepa-max-new-tokens", "8"),
    ("--eval-limit", "100"): ("--eval-limit", "2", "--data-dir", "bench"),  # a local math500.jsonl
    ("--epochs", "3"): ("--epochs", "2"),
    ("--batch-size", "64"): ("--batch-size", "4"),
    ("--min-hard", "32"): ("--min-hard", "2"),
    ("--budget", "2000"): ("--budget", "8"),
    ("--dev-size", "64"): ("--dev-size", "2"),
}


def substitute(args: list[str], model: Path) -> list[str]:
    out, i = [], 0
    while i < len(args):
        for key, value in ONE_GPU_SIZES.items():
            if tuple(args[i:i + len(key)]) == key:
                out += [v.format(model=model) for v in value]
                i += len(key)
                break
        else:
            out.append(args[i])
            i += 1
    return out


def run_blocks(blocks: list[str], cwd: Path, model: Path, monkeypatch) -> None:
    """Each command line of ``blocks`` in ``cwd``: ``p2o run`` in its own process as users start it
    (it sets the process's torch threads), the others in this one (they would mostly wait for imports)."""
    monkeypatch.chdir(cwd)
    for block in blocks:
        for args in commands_of(block):
            argv = substitute(args[1:], model)
            if argv[0] == "run":
                done = subprocess.run([sys.executable, "-m", "p2o_cli", *argv], env=ENV, capture_output=True,
                                      text=True, timeout=600)
                code, output = done.returncode, done.stderr
            else:
                result = CliRunner().invoke(app, argv)
                code, output = result.exit_code, result.output + repr(result.exception)
            assert code == 0, f"{shlex.join(args)}\n{output[-3000:]}"


def write_problems(cwd: Path, world: Path) -> None:
    """problems.jsonl: the page's example problems, then the test world's; bench/math500.jsonl beside it."""
    shown = fenced_block(DOCS / "one-gpu.md", "problems")
    (cwd / "problems.jsonl").write_bytes(shown.encode() + (world / "train.jsonl").read_bytes())
    (cwd / "bench").mkdir()
    (cwd / "bench" / "math500.jsonl").write_bytes((world / "bench" / "toy-mini.jsonl").read_bytes())


def test_the_pages_example_problems_are_valid_problem_records(tmp_path) -> None:
    from p2o_cli.data.problems import load_problems

    path = tmp_path / "problems.jsonl"
    path.write_text(fenced_block(DOCS / "one-gpu.md", "problems"))
    problems = load_problems(str(path))
    assert [p.id for p in problems] == ["p1", "p2", "p3"]
    assert all(p.answer for p in problems)


def test_readme_shows_the_one_gpu_pages_blocks() -> None:
    for name in ("problems", "one-gpu"):
        assert fenced_block(README, name) == fenced_block(DOCS / "one-gpu.md", name), name
    assert fenced_block(README, "chain") == fenced_block(DOCS / "commands.md", "chain")


TESTED_BLOCKS = {"one-gpu.md": ("one-gpu-probe", "one-gpu"), "commands.md": ("chain",)}


def test_every_substitution_matches_a_tested_block() -> None:
    """A size the pages no longer show would leave its GPU value in the CPU test: fail instead."""
    argvs = [args for page, names in TESTED_BLOCKS.items() for name in names
             for args in commands_of(fenced_block(DOCS / page, name))]
    for key in ONE_GPU_SIZES:
        assert any(key == tuple(a[i:i + len(key)]) for a in argvs for i in range(len(a))), key


def test_one_gpu_path_runs_on_cpu_with_a_tiny_model(tmp_path, tiny_model_dir, world, monkeypatch) -> None:
    write_problems(tmp_path, world)
    blocks = [fenced_block(DOCS / "one-gpu.md", name) for name in TESTED_BLOCKS["one-gpu.md"]]
    run_blocks(blocks, tmp_path, tiny_model_dir, monkeypatch)
    run = tmp_path / "runs" / "first"
    assert (run / "metrics.jsonl").read_bytes().count(b"\n") >= 4  # 2 epochs of ≥ 2 steps
    assert sorted((run / "checkpoints").iterdir())
    assert (run / "report" / "report.md").is_file()
    assert (tmp_path / "probe-hard.jsonl").is_file() and orjson.loads((tmp_path / "base-eval.json").read_bytes())


def test_chained_commands_run_on_cpu_with_a_tiny_model(tmp_path, tiny_model_dir, world, monkeypatch) -> None:
    write_problems(tmp_path, world)
    run_blocks([fenced_block(DOCS / "commands.md", "chain")], tmp_path, tiny_model_dir, monkeypatch)
    for name in ("rollouts.jsonl", "hard.jsonl", "templates.jsonl", "assignments.jsonl", "rollouts-2.jsonl",
                 "ckpt-2/model.safetensors", "results.json"):
        assert (tmp_path / name).is_file(), name
    templated = [orjson.loads(line) for line in (tmp_path / "rollouts-2.jsonl").read_bytes().splitlines()]
    assert any(r["template_id"] is not None for r in templated)


@pytest.mark.parametrize("page", sorted(TESTED_BLOCKS))
def test_every_marked_block_is_tested(page) -> None:
    marked = set(re.findall(r"<!-- docs-test: ([\w-]+) -->", (DOCS / page).read_text())) - {"problems"}
    assert marked == set(TESTED_BLOCKS[page])
