"""The offline demo: a synthetic shapes world and the tiny CLIP trained on it.

Its pieces: the shapes world (``demo/shapes.py``: colours, shapes, the held-out pairs, drawing) and the trainer
(``demo/train.py``, ``python -m evalsuite.demo.train --out DIR`` / ``make demo-model``) live here; the model card
and its weights where every card lives (``models/cards/demo-clip.yaml``, ``models/weights/demo-clip/``), the tasks
and prompts where every task lives (``tasks/demo/``, ``tasks/suites/demo.yaml``, ``prompts/*/demo_shapes.yaml``),
and its two source kinds beside the other sources (``data/synthetic.py``, ``data/synthetic_clips.py``), which
import only the shapes world. The one import from here back up the layers is ``train.py`` -> ``models.card`` (the
normalisation constants); tests/unit/test_one_place.py checks both directions.
"""
