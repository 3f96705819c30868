"""da3_ros: Depth Anything 3 as a streaming ROS 2 perception package.

Layers (imports point downwards only):
  da3_ros.model     the DA3 network, pure torch            (no ROS)
  da3_ros.geometry  poses, alignment, projection, metrics  (no ROS)
  da3_ros.stream    window, scheduling, world frame        (no ROS)
  da3_ros.ros       node, message conversions, bag replay  (the only rclpy user)
  da3_ros.cli       the `da3_ros` command
"""

# The generated interfaces (da3_ros.msg) are installed by colcon into the
# install tree's copy of this package; extending __path__ lets a source checkout
# that comes first on sys.path (tests, development) still find them there.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
