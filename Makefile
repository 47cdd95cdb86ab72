# The two commands of the README: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run render test bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, so pip takes the CPU wheel and not several GB of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
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

bench: $(STAMP)
	$(BIN)/python bench/engine_bench.py

clean:
	rm -rf $(VENV) output
