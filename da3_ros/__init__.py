"""da3_ros: Depth Anything 3 as a streaming ROS 2 perception package.

Layers (imports point downwards only):
  da3_ros.model     the DA3 network, pure torch            (no ROS)
  da3_ros.geometry  poses, alignment, projection, metrics  (no ROS)
  da3_ros.stream    window, scheduling, world frame        (no ROS)
  da3_ros.ros       node, message conversions, bag replay  (the only rclpy user)
  da3_ros.cli       the `da3_ros` command
"""

__version__ = "0.1.0"
