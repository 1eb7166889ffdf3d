"""``stream-detect bench``: one run, one model and input size, every figure that matters.

The parts: :mod:`.inputs` (the model and the clip), :mod:`.forward` (bare
model rates per backend), :mod:`.stages` (per-stage costs), :mod:`.end_to_end`
(``annotate`` on a file, ``run`` with a websocket client, and the naive
hand-written loop), :mod:`.report` (table and JSON).
"""
