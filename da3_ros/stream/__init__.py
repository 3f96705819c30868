"""The streaming core (no ROS): sliding window over a WindowModel, one world
frame and scale, per-frame results, bounded map and trajectory."""

from .config import StreamConfig
from .interface import Frame, WindowModel, WindowPrediction
from .pipeline import FrameError, ModelOutputError, Streamer
from .result import AlignmentStatus, StreamResult
from .world_map import Trajectory, VoxelMap

StreamPipeline = Streamer  # the name used in the issue

__all__ = [
    "AlignmentStatus", "Frame", "FrameError", "ModelOutputError", "StreamConfig", "StreamPipeline",
    "StreamResult", "Streamer", "Trajectory", "VoxelMap", "WindowModel", "WindowPrediction",
]
