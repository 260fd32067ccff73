"""The offline demo: a synthetic shapes world and the tiny CLIP trained on it (see scripts/train_demo_model.py)."""
