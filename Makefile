# Two commands for a fresh machine: `make demo` and `make test`.
.PHONY: demo test bootstrap bench

bootstrap:
	tools/bootstrap.sh dev

demo: bootstrap
	.venv/bin/edge demo kws

test: bootstrap
	.venv/bin/python -m pytest

bench: bootstrap
	.venv/bin/python tools/bench_kernels.py --quick
