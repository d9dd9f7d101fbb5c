# One target per chore. `make run` and `make test` are the README's two commands:
# both install what they need (system packages via scripts/install-system-deps.sh, Python
# packages into .venv) and are safe to run again.
VENV ?= .venv
PY := $(VENV)/bin/python
# Reinstall when the package's build inputs change (setup.py compiles nat/_mmsg_ext.c in place).
BUILD_INPUTS := pyproject.toml setup.py nat/_mmsg_ext.c
STAMP := $(VENV)/.installed-$(shell cat $(BUILD_INPUTS) | sha1sum | cut -c1-12)

.PHONY: run test lint unit bench sysdeps venv clean screenshots netlab
.PHONY: bundle bundle-check install-desktop

sysdeps:
	bash scripts/install-system-deps.sh

$(STAMP): $(BUILD_INPUTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

run: sysdeps venv
	$(VENV)/bin/peercall $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	bash scripts/run-tests.sh $(PY) $(PYTEST_ARGS)

test: sysdeps venv lint unit

screenshots: sysdeps venv
	QT_QPA_PLATFORM=offscreen $(PY) scripts/screenshots.py --out docs/screenshots

# NAT lab by hand (root): one scenario stays up until Ctrl-C; `make netlab SCENARIO=--list`.
SCENARIO ?= cone-cone
netlab: venv
	$(PY) scripts/netlab.py $(SCENARIO)

bench: sysdeps venv
	bash scripts/run-bench.sh $(PY)

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache

# --- packaging (issue 6): the one-folder desktop app and its freedesktop files -------------
BUNDLE_STAMP := $(VENV)/.packaging-installed

$(BUNDLE_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,packaging]'
	touch $(BUNDLE_STAMP)

# dist/peercall/peercall: a self-contained folder (Python, Qt, PyAV/FFmpeg, PortAudio inside).
bundle: sysdeps $(BUNDLE_STAMP)
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN \
		--distpath dist --workpath build/pyinstaller packaging/peercall.spec

# Build, then run the built app's installation check with no display (what CI runs).
bundle-check: bundle
	env -u DISPLAY -u WAYLAND_DISPLAY QT_QPA_PLATFORM=offscreen dist/peercall/peercall --self-check

# Menu entry and icons for the current user (the `peercall` command must be on PATH).
DATA_HOME ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)
install-desktop:
	install -Dm644 packaging/linux/org.peercall.PeerCall.desktop \
		$(DATA_HOME)/applications/org.peercall.PeerCall.desktop
	install -Dm644 packaging/linux/org.peercall.PeerCall.metainfo.xml \
		$(DATA_HOME)/metainfo/org.peercall.PeerCall.metainfo.xml
	cd packaging/linux/icons && for f in hicolor/*/apps/org.peercall.PeerCall.*; do \
		install -Dm644 "$$f" "$(DATA_HOME)/icons/$$f"; done
	-update-desktop-database -q $(DATA_HOME)/applications 2>/dev/null
