"""The transforms the node reads: fixed ones from /tf_static, and the external
odometry's poses by stamp. (Where the node's world is: stream/world.py.)

tf2_ros is not installable everywhere this package is tested, and the node needs
only fixed (static) transforms: base_frame -> camera optical frame. So it keeps
its own small /tf_static cache instead of a full TF buffer.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Dict, Optional, Tuple

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from da3_ros.geometry.transforms import inv_se3
from da3_ros.ros.conversions import transform_to_matrix

TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


class StaticTree:
    """Fixed transforms (from /tf_static), with lookups along parent/child chains."""

    def __init__(self):
        self._lock = threading.Lock()
        self._parent: Dict[str, Tuple[str, np.ndarray]] = {}  # child -> (parent, T_parent_child)

    def add(self, msg: TFMessage) -> None:
        with self._lock:
            for t in msg.transforms:
                try:
                    self._parent[t.child_frame_id] = (t.header.frame_id, transform_to_matrix(t.transform))
                except ValueError:
                    continue  # an invalid quaternion: keep what we had

    def lookup(self, target: str, source: str) -> Optional[np.ndarray]:
        """T_target_source (maps points in `source` to `target`), or None if the
        tree does not connect them."""
        with self._lock:
            up_src = self._chain_to_root(source)  # frame -> T_frame_source
            up_tgt = self._chain_to_root(target)  # frame -> T_frame_target
        for frame, T_f_src in up_src.items():
            if frame in up_tgt:
                return inv_se3(up_tgt[frame]) @ T_f_src
        return None

    def _chain_to_root(self, frame: str) -> Dict[str, np.ndarray]:
        T = np.eye(4)
        chain = {frame: T}
        while frame in self._parent and len(chain) < 1000:  # a cycle in a bad tree must not hang us
            parent, T_parent_frame = self._parent[frame]
            T = T_parent_frame @ T
            frame = parent
            chain[frame] = T
        return chain


class OdometryHistory:
    """A bounded history of external odometry poses, looked up by stamp."""

    def __init__(self, maxlen: int = 400):
        self._lock = threading.Lock()
        self._items: deque = deque(maxlen=maxlen)  # (stamp seconds, T_world_base, frame_id)

    def add(self, stamp: float, T_world_base: np.ndarray, frame_id: str) -> None:
        with self._lock:
            self._items.append((stamp, T_world_base, frame_id))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def nearest(self, stamp: float, max_dt: float) -> Optional[Tuple[np.ndarray, str]]:
        with self._lock:
            if not self._items:
                return None
            best = min(self._items, key=lambda item: abs(item[0] - stamp))
        if abs(best[0] - stamp) > max_dt:
            return None
        return best[1], best[2]
