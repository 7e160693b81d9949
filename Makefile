# Two commands a newcomer needs: `make demo` and `make test`.
# Each step leaves a stamp file so running a target twice redoes nothing that is finished.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# Weights cache shared by every checkout on this machine; override with FST_CACHE=...
FST_CACHE ?= $(HOME)/.cache/fst
export FST_CACHE
CACHE   := $(FST_CACHE)

.PHONY: demo test setup weights clean bench gpu-wheels

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

$(CACHE)/vgg16.safetensors: | $(VENV)/.installed
	$(BIN)/fst weights fetch --arch vgg16

$(CACHE)/vgg19.safetensors: | $(VENV)/.installed
	$(BIN)/fst weights fetch --arch vgg19

# One pytest worker per core (pytest-xdist), at most 4: every test process runs one intra-op thread
# (tests/conftest.py), so on 2 idle cores two workers took 94 s where one took 175 s for the same tests
# (docs/benchmarks.md). `worksteal` hands a finished worker tests from the other's queue, so one long
# file never runs alone at the end. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test: setup weights
	$(PYTEST)

# The suite on a machine that is busy: a job spinning on every core and half of MemTotal held in
# resident pages (never more than is available; the load goes first if memory runs out) while it
# runs, then stopped. A test that passes alone and fails here depends on timing or free memory.
.PHONY: test-load
test-load: setup weights
	$(BIN)/python scripts/load.py --memory 0.5 -- $(PYTEST)

# The main job on the embedded default. Training resumes from runs/quickstart (a finished run is not redone).
DEMO_PHOTOS := alpaca brandenburg_gate butterfly camels canyon_de_chelly bison
DEMO_PAINTINGS := the_scream composition_vii great_wave hiroshige_inokashira_snow
demo: setup weights
	$(BIN)/fst shards --sample
	$(BIN)/fst fit --config configs/quickstart.yaml --ckpt_path last
	$(BIN)/fst export runs/quickstart/checkpoints/last.ckpt --out runs/quickstart/model.pt
	$(BIN)/fst stylize $(DEMO_PHOTOS:%=fst/assets/photos/%.jpg) --model runs/quickstart/model.pt --out runs/quickstart/stylized
	@mkdir -p runs/universal_demo
	$(BIN)/fst sheet $(DEMO_PHOTOS:%=fst/assets/photos/%.jpg) --model sample:universal --quiet \
		--style-image $(DEMO_PAINTINGS:%=fst/assets/styles/%.jpg) --out runs/universal_demo/sheet.jpg
	@echo
	@echo "Done. Stylized photos:   runs/quickstart/stylized/"
	@echo "      Any painting, no training (the shipped universal network): runs/universal_demo/sheet.jpg"
	@echo "      Exported model:    runs/quickstart/model.pt   (torch.jit.load; no fst needed)"
	@echo "      Checkpoints:       runs/quickstart/checkpoints/"
	@echo "      TensorBoard logs:  runs/quickstart/tensorboard/   view: $(BIN)/tensorboard --logdir runs/quickstart/tensorboard"

bench: setup weights
	$(BIN)/python scripts/bench_losses.py

clean:
	rm -rf $(VENV) .cache runs

# Pure-Python packages a GPU box may lack (no package index there): carried as wheels by gpu_check.sh.
GPU_WHEELS := webdataset==1.0.2 braceexpand==0.1.7 jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0
gpu-wheels: .whl/.done
.whl/.done:
	mkdir -p .whl
	$(PY) -m pip download -q --no-deps --only-binary=:all: -d .whl $(GPU_WHEELS)
	touch $@

# The Dockerfile built for real (podman, a local CPU stand-in for its base) and fst run in the image:
# minutes, root, podman and mmdebstrap; not part of `make test` (README "Docker").
.PHONY: docker-check
docker-check:
	scripts/docker_check.sh
