"""Train the demo CLIP on the shapes world: ``python -m evalsuite.demo.train --out DIR`` (``make demo-model``).

A tiny open_clip-architecture CLIP, trained contrastively on captions of the *seen* colour-shape pairs only.
The result is saved as an open_clip ``local-dir`` folder (config + fp16 safetensors) that the ``demo-clip``
model card points at. Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..models.card import OPENAI_MEAN, OPENAI_STD
from .shapes import HELD_OUT, draw, seen_pairs

MODEL_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 48, "layers": 3, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {
    "size": 48,
    "mean": OPENAI_MEAN,
    "std": OPENAI_STD,
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
# Training captions. The evaluation templates (prompts/templates/demo_shapes.yaml) include one never seen here.
TRAIN_TEMPLATES = ("a {c}.", "a photo of a {c}.", "a drawing of a {c}.", "an image of a {c}.",
                   "a {c} on a grey background.", "a small {c}.", "a big {c}.")
TRAIN_SEED_OFFSET = 1_000_000  # evaluation images use seeds below this


def train(out: Path, steps: int, batch_per_pair: int, seed: int, threads: int) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = random.Random(seed)
    model = open_clip.CLIP(**MODEL_CFG)
    tokenizer = open_clip.SimpleTokenizer(context_length=77)
    transform = open_clip.image_transform(
        PREPROCESS_CFG["size"], is_train=False, mean=PREPROCESS_CFG["mean"], std=PREPROCESS_CFG["std"],
        resize_mode=PREPROCESS_CFG["resize_mode"], interpolation=PREPROCESS_CFG["interpolation"],
    )
    pairs = seen_pairs()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    counter = TRAIN_SEED_OFFSET
    start, losses = time.time(), []
    model.train()
    for step in range(steps):
        images, texts, labels = [], [], []
        for label, (colour, shape) in enumerate(pairs):
            for _ in range(batch_per_pair):
                images.append(transform(draw(colour, shape, counter)))
                counter += 1
                texts.append(rng.choice(TRAIN_TEMPLATES).format(c=f"{colour} {shape}"))
                labels.append(label)
        pixels, tokens = torch.stack(images), tokenizer(texts)
        target = torch.tensor(labels)
        same = (target[:, None] == target[None, :]).float()
        soft = same / same.sum(1, keepdim=True)  # captions of the same pair are all positives
        img_f, txt_f, scale = model(pixels, tokens)
        logits = scale * img_f @ txt_f.t()
        loss = 0.5 * (-(soft * F.log_softmax(logits, 1)).sum(1).mean()
                      - (soft * F.log_softmax(logits.t(), 1)).sum(1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {sum(losses[-100:]) / len(losses[-100:]):.4f}  "
                  f"{time.time() - start:.0f}s", flush=True)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}, indent=2) + "\n"
    )
    info = {
        "steps": steps, "batch": len(pairs) * batch_per_pair, "seed": seed, "threads": threads,
        "final_loss": sum(losses[-100:]) / len(losses[-100:]), "train_seconds": round(time.time() - start, 1),
        "held_out_pairs": sorted(" ".join(p) for p in HELD_OUT), "train_templates": list(TRAIN_TEMPLATES),
        "torch": torch.__version__, "open_clip": open_clip.__version__,
    }
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-per-pair", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(train(args.out, args.steps, args.batch_per_pair, args.seed, args.threads), indent=2))


if __name__ == "__main__":
    main()
