# Two entry points, each installs what it needs into .venv first:
#   make demo   - the main job end to end on the shared assets
#   make test   - the test suite (CPU; GPU tests are skipped where CUDA is absent)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= torch,yolov5,video,serve,ocr,openvino,ray,test

.PHONY: install demo test test-extended test-gpu lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

demo: install
	$(VENV)/bin/yolo-accel demo

# the long end-to-end tests marked `extended` run with `make test-extended` (CI keeps to 30 minutes)
test: install
	$(PY) -m pytest -m "not extended" --durations=15

test-extended: install
	$(PY) -m pytest -m extended -v

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
