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

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	@# torch first, so nothing that depends on it pulls a multi-GB CUDA build on a CPU machine.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

test: install
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	$(OFFLINE) PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/chain.sh

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
