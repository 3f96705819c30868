"""`da3_ros bench` on the CPU at a tiny size: it runs (a) official, (b) full-window and
(c) incremental with the same weights, checks (c) == (b), and writes bench.json / bench.md.
CPU timings are meaningless; only the plumbing is tested here."""

from __future__ import annotations

import json
import math

import pytest

from da3_ros import bench


def test_parse_size_and_out_paths(tmp_path):
    assert bench.parse_size("504x378") == (504, 378)
    with pytest.raises(Exception):
        bench.parse_size("504")
    assert bench._out_paths(str(tmp_path / "x" / "bench.json"))[1].name == "bench.md"
    assert bench._out_paths(str(tmp_path))[0] == tmp_path / "bench.json"


def test_bench_cpu_tiny(tmp_path, capsys):
    out = tmp_path / "out"
    rc = bench.main(["--variants", "da3-small", "--windows", "3", "--sizes", "56x42", "--iters", "1",
                     "--warmup", "0", "--device", "cpu", "--pose-source", "ray", "camera", "--e2e", "64x48",
                     "--e2e-frames", "3", "--e2e-warmup", "2", "--process-res", "56", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "bench.json").read_text())
    md = (out / "bench.md").read_text()
    official_ok, reason = bench.official_available()

    assert report["device"] in ("cpu", "cuda:0", "cuda")
    if report["device"] == "cpu":
        assert "NOT the benchmark" in printed and "NOT the benchmark" in md
        assert report["precision"] == "fp32"
    assert [r["pose_source"] for r in report["results"]] == ["ray", "camera"]
    for r in report["results"]:
        assert (r["variant"], r["window"], r["size"], r["processed_hw"]) == ("da3-small", 3, "56x42", [42, 56])
        assert r["check"]["ok"] and r["check"]["c_vs_b_max_rel_err"] < 1e-4, r["pose_source"]
    r = report["results"][0]
    for key in ("full", "incremental"):
        m = r[key]
        assert m["n"] == 1 and m["median_ms"] > 0 and math.isfinite(m["fps"]), key
    assert set(r["stages"]) == {"encode", "cross_view", "depth_head", "pose"}
    assert all(v["median_ms"] >= 0 for v in r["stages"].values())
    assert r["ratio_b_over_c"] > 0
    # the optimised path equals the plain path (fp32 on the CPU: tight)
    assert r["check"]["ok"] and r["check"]["c_vs_b_max_rel_err"] < 1e-4
    if official_ok:
        assert r["official"]["median_ms"] > 0 and r["ratio_a_over_c"] > 0
        # same weights in (a) and (b)
        assert r["check"]["b_vs_a_max_rel_err"] < 1e-3
    else:  # no oracle installed: (a) is reported as skipped, with the reason
        assert r["official"] is None and "not importable" in r["official_note"], reason
    # markdown: no row at the node's defaults (tiny size), rows name the pose source, ratios printed
    assert "no configuration at the node's defaults" in md
    assert "| da3-small | ray | 3 | 56x42 | fp32 |" in md and "| da3-small | camera | 3 | 56x42 |" in md
    assert "(a)/(c)" in md and "torch" in md
    assert "da3-small ray S=3 56x42: (a)/(c) =" in printed
    # end to end: decode -> stream -> output arrays, every timed frame answered
    (e,) = report["e2e"]
    assert (e["pose_source"], e["size"], e["frames"], e["window"]) == ("ray", "64x48", 3, 8)
    assert e["fps"] > 0 and e["p90_ms"] >= e["median_ms"] > 0 and e["points_median"] > 0
    assert e["parts_median_ms"]["network"] > 0
    assert "## End to end" in md and "| da3-small | ray | 64x48 | 8 |" in md


def test_node_defaults_come_first():
    row = {"variant": "v", "pose_source": "ray", "window": 8, "size": "504x378", "precision": "bf16",
           "official": None, "official_note": "--no-official", "full": None, "incremental": None, "stages": None,
           "check": {}}
    other = dict(row, pose_source="camera")
    report = {"command": "x", "device_name": "d", "device": "cuda", "torch": "t", "cuda": "c", "python": "p",
              "date": "now", "precision": "bf16", "pose_source": ["camera", "ray"], "iters": 1, "warmup": 0,
              "notes": [], "results": [other, row], "e2e": []}
    md = bench.render_markdown(report)
    first = md.index("## The node's defaults: pose source ray, window 8, 504x378")
    assert md.index("| v | ray | 8 | 504x378 | bf16 |") < md.index("## Other configurations") \
        < md.index("| v | camera | 8 | 504x378 | bf16 |")
    assert first < md.index("| v | ray | 8 | 504x378 | bf16 |")
