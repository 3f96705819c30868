"""bench.md: the tables of a report (bench.json)."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from .common import NODE_POSE, NODE_SIZE, NODE_WINDOW, _num


def _is_node_default(r: Dict[str, Any]) -> bool:
    return r["pose_source"] == NODE_POSE and r["window"] == NODE_WINDOW and r["size"] == NODE_SIZE


def _result_table(rows: Sequence[Dict[str, Any]]) -> List[str]:
    L = ["| variant | pose source | S | size WxH | precision | (a) ms med/p90 | (b) ms med/p90 | (c) ms med/p90 "
         "| FPS (a)/(b)/(c) | peak MiB (a)/(b)/(c) | (a)/(c) | (b)/(c) | rel err (c) vs (b) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b, c = r["official"], r["full"], r["incremental"]

        def ms(m, note=None):
            return f"{m['median_ms']:.1f} / {m['p90_ms']:.1f}" if m else (note or "-")

        fps = " / ".join(_num(m["fps"] if m else None) for m in (a, b, c))
        peak = " / ".join(_num(m["peak_mib"] if m else None, "{:.0f}") for m in (a, b, c))
        ra = _num(r.get("ratio_a_over_c"), "{:.2f}x")
        rb = _num(r.get("ratio_b_over_c"), "{:.2f}x")
        err = _num(r["check"].get("c_vs_b_max_rel_err"), "{:.1e}")
        a_note = "n/a" if r.get("official_note") and "not importable" in str(r.get("official_note")) else (
            "skipped" if r.get("official_note") else None)
        if r.get("official_note") == "out of memory":
            a_note = "OOM"
        L.append(f"| {r['variant']} | {r['pose_source']} | {r['window']} | {r['size']} | {r['precision']} "
                 f"| {ms(a, a_note)} | {ms(b)} | {ms(c)} | {fps} | {peak} | {ra} | {rb} | {err} |")
    return L


def render_markdown(report: Dict[str, Any]) -> str:
    """bench.md: the run, the node's defaults first, other configurations, stages, end to end."""
    default_rows = [r for r in report["results"] if _is_node_default(r)]
    other_rows = [r for r in report["results"] if not _is_node_default(r)]
    L = _header(report) + _results(report, default_rows, other_rows) + _stages_table(default_rows + other_rows)
    L += _e2e_table([e for e in report.get("e2e", []) if e])
    return "\n".join(L) + "\n"


def _header(report: Dict[str, Any]) -> List[str]:
    L = ["# da3_ros bench", "",
         f"- command: `{report['command']}`",
         f"- device: {report['device_name']} ({report['device']})",
         f"- torch {report['torch']}, CUDA {report['cuda']}, Python {report['python']}",
         f"- date: {report['date']}",
         f"- precision: {report['precision']}, pose source: {', '.join(report['pose_source'])}, "
         f"iters {report['iters']} (warm-up {report['warmup']})",
         f"- (c) path: compile={report.get('compile', 'off')}, ray map {report.get('ray_map', 'quarter')}"]
    for n in report["notes"]:
        L.append(f"- NOTE: {n}")
    return L


def _results(report: Dict[str, Any], default_rows, other_rows) -> List[str]:
    legend = ("(a) official network on the whole window; (b) da3_ros.model forward on the whole window; "
              "(c) incremental: encode(new frame) + predict(window, decode=[newest]); all three with the row's "
              "pose source ((a), (b): full ray maps of every view; (c): the node's ray map, --ray-map). "
              "Times per new frame, median/p90 ms; FPS = 1000/median; peak = max allocated GPU memory "
              "(weights included). (a), (b): network only on the preprocessed window; (c): from the uint8 "
              "frame to host numpy (includes upload, preprocessing and transfer).")
    L = ["", f"## The node's defaults: pose source {NODE_POSE}, window {NODE_WINDOW}, {NODE_SIZE} "
              f"(a 640x480 camera), {report['precision']}", "", legend, ""]
    L += _result_table(default_rows) if default_rows else ["(no configuration at the node's defaults in this run)"]
    if other_rows:
        L += ["", "## Other configurations", ""] + _result_table(other_rows)
    return L


def _stages_table(rows) -> List[str]:
    L = ["", "## Where the time of (c) goes (median ms; CUDA events, host clock on CPU)", "",
          "encode = upload + preprocess + per-view blocks of the new frame; cross_view = blocks over the "
          "window (head inputs of the views that need them); depth_head = depth head on the new frame incl. "
          "the resize to native size; pose = the pose source for every frame (camera decoder, or ray head "
          "at the --ray-map resolution + solver); metric = nested metric branch. "
          "Optimised path (compile != off): the stages are its consecutive CUDA-graph replays and (c) total "
          "adds the one host transfer; plain path: the stages are re-run separately.", "",
          "| variant | pose source | S | size | encode | cross_view | depth_head | pose | metric | (c) total |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r["stages"] or {}
        g = [_num(st[k]["median_ms"], "{:.2f}") if k in st else "-"
             for k in ("encode", "cross_view", "depth_head", "pose", "metric_branch")]
        tot = _num(r["incremental"]["median_ms"], "{:.2f}") if r["incremental"] else "-"
        L.append(f"| {r['variant']} | {r['pose_source']} | {r['window']} | {r['size']} | " + " | ".join(g)
                 + f" | {tot} |")
    return L


def _e2e_table(e2e) -> List[str]:
    if not e2e:
        return []
    L = ["", "## End to end, per frame, serial (everything the node does but DDS)", "",
          "A raw rgb8 buffer decoded by `da3_ros.io.images`, pushed through the streaming session "
          "(`da3_ros.stream.Session`, "
          "node defaults: window 8, stride 1, 2 shared keyframes decoded again for the alignment, map "
          "from keyframes) over `DA3WindowModel` warmed up for the size, then the output arrays of each "
          "answered frame (NaN-masked depth image, optical-frame point cloud). Random weights on noise "
          "frames. FPS = frames / total time; network = the adapter's encode + predict (host wall time, "
          "GPU work included); world = the rest of the streaming core (alignment, keyframes, map).", "",
          "| variant | pose source | camera | window | precision | FPS | latency ms med / p90 / max "
          "| decode | network | world | outputs | points/frame |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in e2e:
        if "note" in e:
            L.append(f"| {e['variant']} | {e['note']} |")
            continue
        p = e["parts_median_ms"]
        L.append(f"| {e['variant']} | {e['pose_source']} | {e['size']} | {e['window']} | {e['precision']} "
                 f"| {e['fps']:.1f} | {e['median_ms']:.1f} / {e['p90_ms']:.1f} / {e['max_ms']:.1f} "
                 f"| {p['decode']:.2f} | {p['network']:.1f} | {p['world']:.1f} | {p['outputs']:.1f} "
                 f"| {e['points_median']:.0f} |")
    return L
