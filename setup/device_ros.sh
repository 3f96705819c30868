#!/bin/bash
# ROS 2 for a GPU machine that has Python 3.12 + torch but no ROS and no network
# (the device used for `da3_ros bench-node`). Two steps:
#
# 1. here, with network, into .whl/ (git-ignored via .git/info/exclude), the same
#    pinned ROS 2 Kilted wheels `make setup` installs, for cp312:
#      P="--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
#      grep '^ros-' requirements/ros-kilted.txt > /tmp/ros.txt
#      pip download -q --no-deps --only-binary=:all: $P -d .whl -r /tmp/ros.txt
#      plus colcon-common-extensions 0.3.0 and its colcon-* packages, catkin-pkg,
#      distlib, docutils, lark, argcomplete, notify2, rosbags, lz4, ruamel.yaml,
#      backports.zstd, transforms3d, natsort (versions as in a local .venv's pip
#      freeze) and empy 4.2.1 (an sdist); about 51 MB in all
# 2. there (carry .whl): bash setup/device_ros.sh && . ./env.sh
#
# The image's python3 is a venv holding torch: the wheels go into it (a venv made
# from it would not see torch); then setup/setup.sh finds its requirements stamp
# current, fixes the wheels' CMake paths and builds tf2_msgs and da3_ros.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DA3_ROS_VENV
DA3_ROS_VENV=$(python3 -c 'import sys; print(sys.prefix)')
t0=$(date +%s)
"$DA3_ROS_VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation --disable-pip-version-check \
    .whl/*.whl .whl/*.tar.gz 2>&1 | grep -v "^WARNING" || true
# the stamp setup.sh compares (its REQUIREMENTS for a machine without /opt/ros, then constraints, official-da3)
cat requirements/ros-kilted.txt requirements/core.txt requirements/test.txt requirements/torch-cpu.txt \
    requirements/constraints.txt requirements/official-da3.txt | sha256sum | cut -d' ' -f1 > "$DA3_ROS_VENV/.requirements.sha256"
bash setup/setup.sh
echo "[device_ros] done in $(( $(date +%s) - t0 )) s"
