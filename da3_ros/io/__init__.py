"""da3_ros.io: camera streams in, results out. NumPy, Pillow and rosbags (matplotlib in
plots, when installed); no rclpy, no torch.

  images   ROS image buffers <-> arrays (replaces cv_bridge)
  sources  image folder / video / rosbag2 -> SourceFrame stream (`open_source`)
  datasets TUM RGB-D, 7-Scenes, plain folder: their ground truth (depth, poses) for evaluation
  plots    pictures of results (matplotlib, optional)
  camera_info  sensor_msgs/CameraInfo -> K of the image (K or P, binning, ROI)
  writers  PLY, TUM trajectories, millimetre depth PNG, JSON
  bags     rosbag2 reading/writing helpers and message builders on `rosbags`
"""
