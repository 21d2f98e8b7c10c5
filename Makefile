# tankwatch — `make demo` runs a simulated park end to end; `make test` checks the import contracts, then runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint services browser-deps report-deps clean bench-peers

install: $(STAMP)

$(STAMP): pyproject.toml
	deploy/scripts/bootstrap-python.sh $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: install report-deps
	$(VENV)/bin/tankwatch demo

services:
	deploy/scripts/test-services.sh

browser-deps:
	deploy/scripts/browser-deps.sh

# Bulletin PDFs: the CJK font fpdf2 embeds, and pdftotext that the tests read them back with.
report-deps:
	deploy/scripts/report-deps.sh

# Three workers on two cores (much of the suite waits on servers and real time): the browser tests on one (they
# share a demo and a browser), everything else wherever it fits.
test: install services browser-deps report-deps
	$(VENV)/bin/lint-imports
	@# numba compiles the points reader and the alarm core's passes into its cache once, before every worker's decode
	@# and alarm processes wait on them (rather than each compiling them at once, under the suite's load)
	$(PY) -c "from alarms.evaluate import AlarmCore; from tankwatch.config import load_site; \
	from ingest.mqtt.points_reader import warm_reader; AlarmCore(load_site('deploy/sites/demo-park.yaml')); warm_reader()"
	$(VENV)/bin/pytest -n 3 --dist loadgroup --durations=30

# Node-RED 4 (npm, into ~/.cache/tankwatch/node-red) vs tankwatch on one MQTT feed; PPM=50|200|1000.
PPM ?= 200
bench-peers: install services
	$(VENV)/bin/tankwatch bench peers --points-per-message $(PPM)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) data test-artifacts .services
