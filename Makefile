# The two commands of the README.
#   make run    set up and run the panel (simulated dom0, demo data) on 127.0.0.1:8000
#   make test   set up everything the tests need and run the whole suite
.PHONY: run test lint

run:
	@scripts/setup.sh
	@.venv/bin/python scripts/run.py

test:
	@scripts/setup.sh --dev
	@scripts/test.sh $(ARGS)

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
