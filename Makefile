# The two commands of the README. Both set up first (idempotent, quick the second time).
.PHONY: setup demo test lint samples bench fuzz clean

setup:
	@bash scripts/setup.sh

samples: setup
	.venv/bin/python -m sample_images.build

demo: samples
	.venv/bin/python -m sample_images.demo

test: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python -m bench.run_all

# The long fuzz campaign (docs/security.md); FUZZ_SECONDS=3600 make fuzz for an hour.
fuzz: setup
	.venv/bin/python -m bench.fuzz --seconds $${FUZZ_SECONDS:-1800}

clean:
	rm -rf sample_images/out bench/out .pytest_cache
