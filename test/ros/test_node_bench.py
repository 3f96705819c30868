"""`da3_ros bench-node`: the real node over loopback DDS with a camera process
beside it, a few frames with the exact oracle on the CPU. Asserts on what the
tool counts and how its numbers fit together, not on how fast this machine is."""

import json
import os

import numpy as np
import pytest


def test_bench_node_counts_stamps_and_stages(tmp_path):
    from da3_ros.ros import node_bench
    from da3_ros.ros.node_bench import STAGES

    out = tmp_path / "bench"
    rc = node_bench.main(["--variants", "oracle", "--rates", "30", "max", "--seconds", "1.5", "--size", "160x120",
                          "--frames", "8", "--warmup-answers", "4", "--domain-id", os.environ["ROS_DOMAIN_ID"],
                          "--out", str(out)])
    assert rc == 0
    (r,) = json.loads((out / "bench_node.json").read_text())
    assert "error" not in r, r
    assert r["captures_after_warmup"] == 0  # the oracle captures nothing; the count is the model's own
    assert [p["name"] for p in r["phases"]] == ["30 Hz", "max"]
    for p in r["phases"]:
        assert p["published"] > 0 and 0 < p["answered"] <= p["published"]
        assert p["dropped"] == p["published"] - p["answered"]
        got = p["received"]
        assert got["depth"] == p["answered"]  # answered: the depth image arrived
        # TF and odometry of every answered frame arrived (reliable; TF keeps 100, the
        # camera waits for both). The image-sized outputs keep 2 in their history
        # (newest wins), so a reader starved on a loaded machine may miss some of
        # them, depth included: never more than one per published image.
        for name in ("tf", "odometry"):
            assert got[name] >= p["answered"], (name, got)
        for name in ("depth_info", "tf", "odometry", "points", "confidence"):
            assert got[name] <= p["published"], (name, got)
        lat = p["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
        assert all(np.isfinite(v) for v in p["stages_mean_ms"].values()), p["stages_mean_ms"]
    assert r["phases"][0]["published"] == round(1.5 * 30)  # a fixed rate publishes rate x seconds images
    # per frame: the stages (camera and node marks on one clock) add up to the latency
    rows = (out / "frames.csv").read_text().splitlines()
    keys = rows[0].split(",")
    frames = [dict(zip(keys, line.split(","))) for line in rows[1:]]
    assert len(frames) == sum(p["answered"] for p in r["phases"])
    stamps = [int(f["stamp_ns"]) for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # each frame once, in stamp order
    for f in frames:
        total = sum(float(f[k]) for k in STAGES)
        assert total == pytest.approx(float(f["latency_ms"]), abs=1e-6)
        assert float(f["latency_ms"]) > 0 and float(f["network"]) >= 0
        assert int(f["map_points"]) >= 0
    # the map: its work happened on the map thread and was timed against the map's size
    counters = r["counters"]
    assert counters["map_inserted"] > 0 and counters["bad_inputs"] == 0
    assert r["map_log"] and all(ms >= 0 and size > 0 for ms, _, size in r["map_log"])
    assert (out / "map.csv").read_text().count("\n") == len(r["map_log"]) + 1
