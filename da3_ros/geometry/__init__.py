"""Geometry for the streaming core: transforms, camera model, alignment, metrics.
Plain numpy/scipy; no torch, no ROS."""

from .align import DegenerateAlignment, RobustAlignment, robust_sim3, spread_ratios, umeyama
from .camera import backproject, depth_to_points, pixel_grid, scale_intrinsics, transform_points
from .metrics import ate, depth_metrics, rotation_error, rpe
from .transforms import Sim3, c2w_to_tum, inv_se3, is_rigid, make_se3, rotation_angle_deg, tum_to_c2w

__all__ = [
    "DegenerateAlignment", "RobustAlignment", "robust_sim3", "spread_ratios", "umeyama",
    "backproject", "depth_to_points", "pixel_grid", "scale_intrinsics", "transform_points",
    "ate", "depth_metrics", "rotation_error", "rpe",
    "Sim3", "c2w_to_tum", "inv_se3", "is_rigid", "make_se3", "rotation_angle_deg", "tum_to_c2w",
]
