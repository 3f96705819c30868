"""Pictures of results (matplotlib, imported only here and only when drawing;
it is a test/extra dependency: `available()` says whether it is installed).

  evaluation_figure  depth vs ground truth for a few frames, the relative error
                     map, and a top view of the trajectory against ground truth
"""

from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np

PathLike = Union[str, os.PathLike]


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def evaluation_figure(path: PathLike, samples: Sequence[dict], est_xy: Sequence[np.ndarray],
                      gt_xy: Sequence[np.ndarray], title: str, plane: str = "", depth_unit: str = "m",
                      max_rel_err: float = 0.5) -> None:
    """Write a PNG: per sample (dict with frame, image (HxWx3 or None), gt and
    pred (HxW, metres, NaN = none)) a column of image, ground-truth depth,
    predicted depth (same colour scale) and |pred - gt| / gt (0..max_rel_err);
    on the right the aligned trajectory over the ground truth, one line per
    world segment (est_xy / gt_xy: lists of (N,2) in metres)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(samples), 1)
    fig = plt.figure(figsize=(3.4 * n + 6.5, 10.5), layout="constrained")
    gs = fig.add_gridspec(4, n + 1, width_ratios=[1.0] * n + [1.9])
    valid = [s["gt"][np.isfinite(s["gt"]) & (s["gt"] > 0)] for s in samples]
    values = np.concatenate(valid) if sum(len(v) for v in valid) else np.array([0.0, 1.0])
    lo, hi = np.percentile(values, [2, 98])  # one colour scale for ground truth and prediction
    depth_im = err_im = None
    rows = [[], [], [], []]
    for c, s in enumerate(samples):
        gt, pred = s["gt"], s["pred"]
        ok = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
        err = np.full(gt.shape, np.nan, np.float32)
        err[ok] = np.abs(pred[ok] - gt[ok]) / gt[ok]
        panels = [("image", s.get("image")), ("ground truth", gt), ("prediction", pred), ("|pred - gt| / gt", err)]
        for r, (name, img) in enumerate(panels):
            ax = fig.add_subplot(gs[r, c])
            rows[r].append(ax)
            ax.axis("off")
            if img is None:
                ax.text(0.5, 0.5, "(no image)", ha="center", va="center", transform=ax.transAxes)
            elif r == 0:
                ax.imshow(img)
            elif r < 3:
                depth_im = ax.imshow(np.where(np.isfinite(img), img, np.nan), cmap="turbo", vmin=lo, vmax=hi)
            else:
                err_im = ax.imshow(img, cmap="magma", vmin=0.0, vmax=max_rel_err)
            ax.set_title(f"frame {s['frame']}: {name}" if r == 0 else name, fontsize=9)
    if depth_im is not None:
        fig.colorbar(depth_im, ax=rows[1] + rows[2], shrink=0.8, label=f"depth [{depth_unit}]")
    if err_im is not None:
        fig.colorbar(err_im, ax=rows[3], shrink=0.8, label="relative error")
    ax = fig.add_subplot(gs[:, n])
    for k, g in enumerate(gt_xy):
        ax.plot(g[:, 0], g[:, 1], "k-", lw=2, label="ground truth" if k == 0 else None)
        ax.plot(g[:1, 0], g[:1, 1], "go", label="start" if k == 0 else None)
    for k, e in enumerate(est_xy):
        ax.plot(e[:, 0], e[:, 1], "r.-", lw=1, ms=3, label="estimate (aligned)" if k == 0 else None)
    if not gt_xy:
        ax.text(0.5, 0.5, "no ground-truth poses", ha="center", va="center", transform=ax.transAxes)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"[{depth_unit}]")
    ax.set_ylabel(f"[{depth_unit}]")
    ax.set_title("trajectory, top view" + (f"\n({plane})" if plane else ""), fontsize=10)
    if gt_xy or est_xy:
        ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=80)
    plt.close(fig)
