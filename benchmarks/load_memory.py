"""Peak host memory while loading a native EVA-CLIP checkpoint, per precision mode: evalsuite's loader (meta device,
memory-mapped checkpoint, per-tensor cast with page release, assign) into bf16 (the cast modes, --precision
fp16/bf16) and into fp32 (fp32 and the autocast modes amp_fp16/amp_bf16, the EVA cards' default), vs the naive way
(torch.load, fp32 model, load_state_dict, .to(bf16)). Each load runs in a fresh process; the figure is (peak RSS -
RSS before loading) divided by the size of the loaded weights, the baseline taken after imports and a warm-up
construction of a tiny model (library loading is not weights). Target for evalsuite: <= 1.3 in both modes (about
one copy of the weights in the dtype they are held in).

    python benchmarks/load_memory.py [--width 1024 --layers 16] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, torch
from pathlib import Path
mode, ckpt, cfg_path, dtype_name = sys.argv[1:5]
dtype = getattr(torch, dtype_name)

def status_kb(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1])

from evalsuite.models.eva_native import EvaClipConfig, build_eva_clip, load_native_weights
cfg = EvaClipConfig.from_json(Path(cfg_path))
# warm-up: the first model construction loads libraries (~250 MB with the CUDA build of torch), weights aside
tiny = json.loads(Path(cfg_path).read_text())
tiny['vision_cfg'].update(layers=1, width=64); tiny['text_cfg'].update(layers=1, width=64, heads=1)
build_eva_clip(EvaClipConfig.from_dict(tiny, 'warm-up'), meta=(mode == 'evalsuite'))
before = status_kb('VmRSS')
if mode == 'evalsuite':
    model = build_eva_clip(cfg, meta=True)
    load_native_weights(model, Path(ckpt), dtype)
else:
    model = build_eva_clip(cfg, meta=False)
    if ckpt.endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(ckpt)
    else:
        state = torch.load(ckpt, map_location='cpu', weights_only=True)['module']
    model.load_state_dict(state, strict=False)
    model = model.to(dtype)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve (it would include the parent's peak)
peak = status_kb('VmHWM')
nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({'before_kb': before, 'peak_kb': peak, 'weight_bytes': nbytes}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32", help="dtype stored in the checkpoint")
    parser.add_argument("--format", choices=("pt", "safetensors"), default="pt")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the synthetic checkpoint")
    args = parser.parse_args()

    import torch

    from evalsuite.models.eva_native import EvaClipConfig, build_eva_clip

    cfg = {"embed_dim": 768,
           "vision_cfg": {"image_size": 224, "layers": args.layers, "width": args.width, "head_width": 64,
                          "mlp_ratio": 5, "patch_size": 14, "qkv_bias": False, "postnorm": False, "use_rms_norm": True},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}
    folder = args.keep or Path(tempfile.mkdtemp(prefix="evalsuite-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path, ckpt = folder / "config.json", folder / f"synthetic_{args.dtype}.{args.format}"
    cfg_path.write_text(json.dumps(cfg))
    if not ckpt.exists():
        model = build_eva_clip(EvaClipConfig.from_dict(cfg, "bench"), meta=False)
        dtype = torch.float32 if args.dtype == "fp32" else torch.float16
        state = {k: v.to(dtype) for k, v in model.state_dict().items() if k != "text.attn_mask"}
        if args.format == "pt":
            torch.save({"module": state}, ckpt)
        else:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt))
        del model, state
    size = ckpt.stat().st_size
    print(f"synthetic native checkpoint: {ckpt} ({size / 2**30:.2f} GiB, {args.dtype})")
    results = {}
    runs = {"evalsuite, cast mode (bf16)": ("evalsuite", "bfloat16"),
            "evalsuite, amp / fp32 mode": ("evalsuite", "float32"), "naive, into bf16": ("naive", "bfloat16")}
    for label, (mode, dtype) in runs.items():
        out = subprocess.run([sys.executable, "-c", CHILD, mode, str(ckpt), str(cfg_path), dtype],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[label] = (r["peak_kb"] - r["before_kb"]) * 1024 / r["weight_bytes"]
        print(f"  {label:28s}: peak RSS above baseline {(r['peak_kb'] - r['before_kb']) / 2**20:.2f} GiB,"
              f" weights as loaded {r['weight_bytes'] / 2**30:.2f} GiB -> ratio {results[label]:.2f}")
    cast, amp, naive = results.values()
    print(f"evalsuite peak / loaded weights: cast {cast:.2f}, amp {amp:.2f} (target <= 1.3 each); naive {naive:.2f}"
          f" ({naive / cast:.2f}x evalsuite's cast mode)")


if __name__ == "__main__":
    main()
