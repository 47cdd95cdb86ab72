# The two commands of the README: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Which torch build: "cpu" (the default wheel), or a CUDA one (cu128, cu126, …) from PyTorch's
# own index. Picked automatically: a CUDA build when `nvidia-smi` answers, else the CPU one.
TORCH_VARIANT ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cu128 || echo cpu)
TORCH_INDEX := $(if $(filter cpu,$(TORCH_VARIANT)),,--index-url https://download.pytorch.org/whl/$(TORCH_VARIANT))

.PHONY: run render test lint bench gpu-check clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, so pip takes the CPU wheel and not several GB of CUDA packages.
	# (On a machine with an NVIDIA GPU, TORCH_VARIANT picks the CUDA build from PyTorch's index.)
	$(BIN)/pip install --quiet torch==2.13.0 $(TORCH_INDEX)
	$(BIN)/pip install --quiet -e ".[test]"
	# spandrel (model upscalers) requires torchvision, which has no CPU build for this torch and
	# which none of its upscaler architectures use: install it without its requirements
	# (einops, the one it needs besides torch and numpy, is in pyproject.toml).
	$(BIN)/pip install --quiet --no-deps "spandrel==0.4.2"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/studio workflows/default.json

render: $(STAMP)
	$(BIN)/studio render workflows/default.json --out output

test: $(STAMP)
	HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

# ruff over the whole tree, mypy (strict) over the files pyproject.toml's [tool.mypy] names.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/engine_bench.py

# Everything a lent GPU should confirm (bench/gpu_check.py; tiny models on a CPU).
gpu-check: $(STAMP)
	HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen $(BIN)/python bench/gpu_check.py

clean:
	rm -rf $(VENV) output
