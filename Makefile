# The two commands of the README. Both set up first (idempotent, quick the second time).
.PHONY: setup demo test lint samples bench clean

setup:
	@bash scripts/setup.sh

samples: setup
	.venv/bin/python -m sample_images.build

demo: samples
	.venv/bin/python -m sample_images.demo

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python -m bench.run_all

clean:
	rm -rf sample_images/out bench/out .pytest_cache
