"""Training of the embedded `da3-tiny` network on the project's synthetic renderer.

`python -m da3_ros.train --out DIR --minutes 9 [--resume]` (CUDA GPU; see
`trainer.py`), `python -m da3_ros.train.evaluate --model default` (held-out
streaming metrics). Held-out sequences: `data.HELD_OUT` (never trained on).
"""
