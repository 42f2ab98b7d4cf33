# Two commands do all set-up: `make quickstart` and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test test-slow quickstart lint clean sysdeps kernels

venv: $(STAMP)

# Rebuilt only when the dependency files change; otherwise returns at once.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[tvm,triton,coco,test]'
	$(MAKE) kernels
	touch $(STAMP)

# edgedet's C++ kernels (OpenVINO extension, PyTorch CPU op), built into ~/.cache/edgedet
# (≈ 1 min once); without a compiler edgedet falls back to the reference ops and says so.
kernels:
	-$(BIN)/python -c "from edgedet.kernels import openvino_extension as o, torch_extension as t; \
	  print('built', o.build().library, t.load().__file__)"

# System packages: Debian's aarch64 cross compiler (TVM Cortex-A76 libraries) and chromium
# (the report's browser test), each installed only when missing (needs root or sudo; apt-get only).
sysdeps:
	@SUDO=$$(test "$$(id -u)" = 0 || echo sudo); PKGS=""; \
	  command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || PKGS="$$PKGS gcc-aarch64-linux-gnu"; \
	  test -z "$$PKGS" || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $$PKGS; }
	@# chromium serves only the report's browser test, which skips (saying why) without it
	@command -v chromium >/dev/null 2>&1 || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; } || echo "chromium not installed: the report's browser test will skip"; }

test: venv sysdeps
	$(BIN)/python -m pytest -q

test-slow: venv sysdeps
	$(BIN)/python -m pytest -q -m slow

quickstart: venv sysdeps
	$(BIN)/edgedet quickstart

# ruff, then the layer contract (pyproject [tool.importlinter]; .ci/lint_imports.py says why
# it runs lint-imports on an assembled copy of the package).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/python .ci/lint_imports.py

clean:
	rm -rf $(VENV) build *.egg-info
