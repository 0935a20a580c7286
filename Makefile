# Two entry points, each installs what it needs into .venv first:
#   make demo   - the main job end to end on the shared assets
#   make test   - the test suite (CPU; GPU tests are skipped where CUDA is absent)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= torch,yolov5,video,serve,ocr,openvino,ray,test

.PHONY: install demo test test-fast test-gpu lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

demo: install
	$(VENV)/bin/yolo-accel demo

# every test, on two pytest-xdist workers (one inference thread each; tests/conftest.py groups them)
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder
test: install
	$(PY) -m pytest $(XDIST) --durations=30

# the inner loop: everything not marked slow (see CONTRIBUTING.md)
test-fast: install
	$(PY) -m pytest $(XDIST) -m "not slow" --durations=10

test-gpu: install
	$(PY) -m pytest -m gpu -v

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
