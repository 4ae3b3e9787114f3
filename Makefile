# Two commands for a fresh clone (see README.md):
#   make experiment   set up what is missing, then run the default experiment
#   make test         set up what is missing, then run the test suite
# Arguments pass through: make experiment ARGS="net=resnet20 dataset=cifar10", make test PYTEST_ARGS="-m slow".
#   make gpu-check    on a CUDA machine: every -m cuda test and the quick benchmark suite on the GPU,
#                     results in benchmarks/results/ (benchmarks/gpu_check.py); without a GPU it says so and fails

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: experiment test gpu-check lock clean

experiment: $(STAMP)
	$(BIN)/python run_experiment.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

gpu-check: $(STAMP)
	@$(BIN)/python -m benchmarks.gpu_check

# Reinstalls only when the declared dependencies or the pins change.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	PIP_CONSTRAINT=requirements/constraints.txt $(BIN)/python -m pip install --quiet ".[test]"
	rm -rf build farconv.egg-info
	touch $@

# Regenerates the pins from the current environment (run after changing dependencies).
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude farconv | sort -f > requirements/constraints.txt

clean:
	rm -rf $(VENV) build farconv.egg-info .pytest_cache
