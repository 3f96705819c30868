# Source me:  . ./env.sh
# Afterwards this shell has the ROS 2 underlay, the .venv made by `make setup`
# and the built da3_ros: `import rclpy, da3_ros`, `from da3_ros.msg import
# Keyframe` and the `da3_node` / `da3_ros` commands work.
_da3_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ ! -x "$_da3_root/.venv/bin/python" ] || [ ! -d "$_da3_root/install/da3_ros" ]; then
    echo "env.sh: run 'make setup' in $_da3_root first" >&2
    return 1 2>/dev/null || exit 1
fi
if [ -z "${ROS_DISTRO:-}" ]; then
    for _da3_ros_setup in /opt/ros/*/setup.bash; do
        [ -f "$_da3_ros_setup" ] && . "$_da3_ros_setup"
    done
fi
. "$_da3_root/.venv/bin/activate"
if [ -f "$_da3_root/.venv/underlay_ws/install/local_setup.bash" ]; then
    # wheel-based underlay: ament and CMake look in the venv itself
    export AMENT_PREFIX_PATH="$_da3_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export CMAKE_PREFIX_PATH="$_da3_root/.venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    . "$_da3_root/.venv/underlay_ws/install/local_setup.bash"
fi
. "$_da3_root/install/local_setup.bash"
export PATH="$_da3_root/install/da3_ros/lib/da3_ros:$PATH"
unset _da3_root _da3_ros_setup
