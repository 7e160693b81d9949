# Two commands a newcomer needs: `make demo` and `make test`.
# Each step leaves a stamp file so running a target twice redoes nothing that is finished.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# Weights cache shared by every checkout on this machine; override with FST_CACHE=...
FST_CACHE ?= $(HOME)/.cache/fst
export FST_CACHE
CACHE   := $(FST_CACHE)

.PHONY: demo test setup weights clean bench

setup: $(VENV)/.installed

# torch first, pinned, so pip never picks a newer multi-GB build; then the project.
$(VENV)/.torch:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(BIN)/pip install -q -e '.[test]' torch==2.14.1 torchvision==0.29.1
	touch $@

weights: $(CACHE)/vgg16.safetensors $(CACHE)/vgg19.safetensors

$(CACHE)/vgg16.safetensors: $(VENV)/.installed
	$(BIN)/fst weights fetch --arch vgg16

$(CACHE)/vgg19.safetensors: $(VENV)/.installed
	$(BIN)/fst weights fetch --arch vgg19

test: setup weights
	$(BIN)/python -m pytest -q

demo: setup weights
	$(BIN)/python scripts/demo.py

bench: setup weights
	$(BIN)/python scripts/bench_losses.py

clean:
	rm -rf $(VENV) .cache runs
