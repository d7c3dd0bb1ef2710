# The two set-up commands: `make demo` and `make test`. Each creates .venv on a fresh clone,
# installs torch 2.13.0 first when no torch is importable (a CPU wheel on this machine; any other
# request would pull a multi-GB CUDA build), then installs drf in editable mode.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.drf-installed

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-distributed bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev,quant,wandb]"
	@touch $@

# The main job on the embedded default: DRF on the shipped toy world (toy Wan T2V model, toy Qwen2-VL critic),
# with held-out critic reward and pixel-oracle score before/after, and runs/demo/report.html.
demo: $(STAMP)
	rm -rf runs/demo
	$(VENV)/bin/drf train configs/toyworld_drf.yaml --set name=demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not distributed" tests

# The multi-process tests (FSDP2, hybrid sharding over two simulated machines, resuming on other numbers of
# processes): torchrun launches of tiny runs, about 40 minutes on a busy 2-core machine. CI runs both targets.
test-distributed: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m distributed tests

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check drf prompts critics trainers tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
