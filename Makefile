# upcall-lab: `make run` measures this machine and prints the PDF's path;
# `make test` runs the test suite.  Both install what is missing first:
# Debian packages (as root), a virtual environment, the native build.

PYTHON ?= /usr/bin/python3
VENV   ?= .venv
SUITE  ?= experiments/quick.toml
BIN     = $(VENV)/bin
NATIVE  = $(wildcard native/*.c native/*.h native/*.py)

.PHONY: setup run test lint doctor clean

setup: $(VENV)/.installed

$(VENV)/.debian: scripts/debian-packages.sh
	scripts/debian-packages.sh
	@mkdir -p $(VENV) && touch $@

# Debian's bcc is pure Python over libbcc; reach exactly that module (not
# all of dist-packages) from the venv through a .pth file.
$(VENV)/.installed: $(VENV)/.debian pyproject.toml setup.py $(NATIVE)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,lint]"
	mkdir -p $(VENV)/debian-bcc
	ln -sfn /usr/lib/python3/dist-packages/bcc $(VENV)/debian-bcc/bcc
	$(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
		| xargs -I{} sh -c 'echo "$(CURDIR)/$(VENV)/debian-bcc" > {}/debian-bcc.pth'
	touch $@

run: setup
	$(BIN)/lab run $(SUITE) --report

test: setup
	$(BIN)/pytest

# C in the kernel's style (.clang-format), Python by ruff (pyproject.toml:
# pycodestyle, pyflakes, import order) and mypy on the two packages
C_SOURCES = $(wildcard native/*.c native/*.h lab/probes/*.c lab/families/*.c)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	clang-format --dry-run --Werror $(C_SOURCES)

doctor: setup
	$(BIN)/lab doctor

clean:
	rm -rf $(VENV) build lab/_native*.so lab/_native.c *.egg-info
