# The two commands of the README.
.PHONY: demo test setup

setup:
	bash scripts/setup.sh

demo: setup
	python3 -m gateway.cli demo

test: setup
	python3 -m pytest -q -p no:cacheprovider tests
