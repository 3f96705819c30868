"""What binds a network to the streaming core: the DA3 `WindowModel` adapter,
the model factory (one place turns a model spec into a model) and the offline
runner. Above `model` and `stream`; below `ros`; no rclpy."""
