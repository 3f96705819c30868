"""Put a training run's export in the package as the embedded checkpoint, with its record.

    python -m da3_ros.train.ship <run files> --stage R --args "<the trainer's arguments>"

`<run files>`: a folder holding the run's fp16 export (`model.safetensors`,
`config.json`: what `python -m da3_ros.train` writes to `<out>/da3-tiny/`), its
`train_log.jsonl` and its `eval.json` (the held-out evaluation; omit with
--no-eval-file). The weights replace `da3_ros/weights/da3-tiny/model.safetensors`;
the log is appended to the shipped one after a "stage" record naming the stage
and its arguments (the shipped log is the history of every stage); eval.json is
replaced, with a note saying where it was computed.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..model.loading import load_model
from ..weights import EMBEDDED_DIR


def ship(src: Path, stage: str, args: str, note: str, eval_file: bool = True, dest: Path = EMBEDDED_DIR) -> None:
    src, dest = Path(src), Path(dest)
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_name") != "da3-tiny":
        raise SystemExit(f"{src / 'config.json'}: model_name {cfg.get('model_name')!r}, expected 'da3-tiny'")
    load_model(str(src), device="cpu")  # refuse an export the package could not load
    log = (src / "train_log.jsonl").read_text()
    shipped = dest / "train_log.jsonl"
    with open(shipped, "a") as f:
        f.write(json.dumps({"event": "stage", "name": stage, "args": args}) + "\n")
        f.write(log if log.endswith("\n") else log + "\n")
    shutil.copyfile(src / "model.safetensors", dest / "model.safetensors")
    if eval_file:
        results = json.loads((src / "eval.json").read_text())
        results["_note"] = note
        (dest / "eval.json").write_text(json.dumps(results, indent=1))
    print(f"shipped {src} as {dest} (stage {stage}); {shipped} now has {sum(1 for _ in open(shipped))} lines")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m da3_ros.train.ship", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="folder with model.safetensors, config.json, train_log.jsonl, eval.json")
    p.add_argument("--stage", required=True, help="the stage's name in the shipped log")
    p.add_argument("--args", required=True, help="the trainer's arguments of this stage, as run")
    p.add_argument("--note", default="held-out streaming evaluation (python -m da3_ros.train, end of the run), GPU fp32",
                   help="eval.json's _note")
    p.add_argument("--no-eval-file", action="store_true")
    a = p.parse_args(argv)
    ship(Path(a.src), a.stage, a.args, a.note, not a.no_eval_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
