"""GPU check (issue 17 item 3): one script, under 8 minutes on one H100/H200, measuring what the CPU machines cannot.

Sections (``--sections a,b,c,d,e``; all by default):

a. images/s of RANDOM-INIT EVA02-CLIP-B-16, EVA02-CLIP-L-14 and EVA-CLIP-8B image towers per precision mode
   (fp32, amp_fp16, amp_bf16, fp16, bf16: models/card.PRECISIONS, the same meaning as evalsuite's adapters: fp32
   weights under autocast for amp_*, weights cast for fp16/bf16, inputs in the weights' dtype), uint8 pixels
   normalised on the device as evalsuite does, against the FLOP bound: forward FLOPs of one image
   (torch.utils.flop_counter, attention counted through the math kernel) / the GPU's peak dense bf16 FLOP/s (a
   table for H100 SXM/PCIe/NVL, H200, GH200, A100; ``--peak-tflops`` or $EVALSUITE_PEAK_BF16_TFLOPS override it).
   B-16 and L-14 are open_clip's EVA02 architectures at random init (and written as ``local-dir`` folders for the
   CLI sections); the 8B tower is built from the EVA-CLIP-8B card's config (eva_native's timm Eva) directly on the
   GPU with timm's random init: no weights file, no download.
b. end-to-end ``evalsuite run`` images/s (the task CSV's images_per_second: decode in DataLoader workers + encode)
   on generated 500x375 JPEGs in an ``--include-path`` image_folder task, with the random EVA02-B-16 folder, per
   decoder (pil, tensor, cuda) and with ``--cache-pixels`` (first run fills the pixel cache, second reads it), vs
   the pure forward of the same weights at the same precision and batch size (measured before and after the
   runs, averaged). Also: how many top-1 predictions of each run equal the pil run's.
c. the nvJPEG (``cuda``) decoder against ``pil``: max / mean absolute uint8 pixel difference, share of values that
   differ, and the cosine of the random B-16's fp32 image features of both (the ImageNet sample of
   ../shared/data when present, else the generated JPEGs).
d. a real CUDA out-of-memory back-off: a task of N small JPEGs with N chosen from the L-14 tower's measured memory
   per image so that one batch of all of them needs about twice the free GPU memory, run with ``--batch-size
   256`` (fills the pixel cache) and ``--batch-size 65536`` (reads it; the first chunk of N images runs out of
   memory, evalsuite halves it until it fits). Both must give the same metrics and per-sample predictions. When N
   would exceed ``--oom-max-images`` the child process's GPU memory is capped with
   torch.cuda.set_per_process_memory_fraction so the batch is still twice too large (said in the output).
e. peak GPU memory (torch.cuda.max_memory_allocated) of every mode of (a) and of every ``evalsuite run`` of (b)
   and (d) (each run through a small wrapper around ``python -m evalsuite`` that prints its process's peak).

Every section has a hard time budget (shares of ``--budget``, 420 s by default, 240 s with ``--quick``; time a
section leaves unused passes to the next); what does not fit is skipped with a printed note, as is anything the
machine cannot do (no CUDA decoder, too little memory), with the reason. A final compact markdown summary is
printed for the README; ``--json FILE`` also writes every number.

    python benchmarks/gpu_check.py                 # full check, < 8 min on one H100/H200
    python benchmarks/gpu_check.py --quick         # about half
    python benchmarks/gpu_check.py --sections a,e  # towers only
    python benchmarks/gpu_check.py --cpu-smoke     # every section on the CPU with tiny models (tests)

Without CUDA (and without --cpu-smoke) it exits at once with a one-line message. It uses only torch,
torchvision, open_clip, timm, numpy, PIL and the repository: the CLI (``python -m evalsuite run`` in a subprocess)
and stable public pieces (model cards, data/pixels.py, eva_native's builder, models/tiny.py), imported in one
place (``evalsuite_pieces``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's evalsuite, installed or not (the runs get it on PYTHONPATH)
GiB = 2**30
MODES = ("fp32", "amp_fp16", "amp_bf16", "fp16", "bf16")
SECTIONS = ("a", "b", "c", "d", "e")
SECTION_SHARES = {"a": 0.34, "b": 0.30, "c": 0.08, "d": 0.28}  # e only reports what a, b and d measured
DECODERS = ("pil", "tensor", "cuda")
E2E_TASK, OOM_TASK = "gpucheck", "gpucheck_oom"
NUM_CLASSES = 10

# Peak dense (no sparsity) bf16 tensor-core TFLOP/s from NVIDIA's datasheets, matched in order against
# torch.cuda.get_device_name() (first match wins: the more specific names first).
PEAK_BF16_TFLOPS = (
    ("GH200", 989.4),
    ("H200 NVL", 835.0),
    ("H200", 989.4),  # H200 SXM
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # H100 SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    ("A100", 312.0),  # SXM4 and PCIe alike
)
PEAK_ENV = "EVALSUITE_PEAK_BF16_TFLOPS"

# The wrapper every `evalsuite run` goes through: `python -m evalsuite` as it is, plus the process's peak GPU
# memory on stderr at exit, and an optional cap on the process's GPU memory (section d).
WRAPPER = r"""
import json, os, runpy, sys
import torch
fraction = os.environ.get("GPU_CHECK_MEMORY_FRACTION")
if fraction and torch.cuda.is_available():
    torch.cuda.set_per_process_memory_fraction(float(fraction))
code = 0
try:
    sys.argv = ["evalsuite"] + sys.argv[1:]
    runpy.run_module("evalsuite", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    print("GPU_CHECK " + json.dumps({"peak_bytes": peak}), file=sys.stderr, flush=True)
sys.exit(code)
"""


# ---------------------------------------------------------------------------------------------------------------
# the evalsuite pieces used (one place, so a refactor breaks one function, with a clear message)


def evalsuite_pieces():
    """Everything imported from evalsuite itself: cards, pixels, eva_native's builder, the tiny test model."""
    try:
        from evalsuite.data.pixels import PixelSpec, UInt8Pixels, normalize_on_device
        from evalsuite.models.card import OPENAI_MEAN, OPENAI_STD, PRECISIONS, find_card
        from evalsuite.models.eva_native import EvaClipConfig, build_eva_clip
        from evalsuite.models.tiny import TINY_MODEL_CFG, TINY_PREPROCESS_CFG
    except ImportError as exc:
        raise SystemExit(f"gpu_check: an evalsuite piece moved ({exc}); "
                         f"update evalsuite_pieces() in {__file__}") from exc
    if tuple(PRECISIONS) != MODES:
        raise SystemExit(f"gpu_check: evalsuite's precision modes are now {PRECISIONS}; this script knows {MODES}")
    return argparse.Namespace(
        PixelSpec=PixelSpec, UInt8Pixels=UInt8Pixels, normalize_on_device=normalize_on_device,
        OPENAI_MEAN=OPENAI_MEAN, OPENAI_STD=OPENAI_STD, find_card=find_card, EvaClipConfig=EvaClipConfig,
        build_eva_clip=build_eva_clip, TINY_MODEL_CFG=TINY_MODEL_CFG, TINY_PREPROCESS_CFG=TINY_PREPROCESS_CFG)


# ---------------------------------------------------------------------------------------------------------------
# settings, budget, output


@dataclass
class Settings:
    device: str
    smoke: bool
    quick: bool
    sections: tuple
    budget: float
    e2e_images: int
    e2e_precision: str
    e2e_batch: int
    oom_precision: str
    oom_max_images: int
    workers: int | None
    min_seconds: float  # timed forward per measurement (after one warm-up batch)
    max_iters: int
    decode_images: int  # section c
    peak_tflops: float | None = None
    peak_source: str = ""
    gpu_name: str = "cpu"
    scratch: Path = Path(".")


class Budget:
    """A global deadline and per-section deadlines; time a section leaves unused passes to the later ones."""

    def __init__(self, seconds: float, sections: tuple) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + seconds
        self.pending = [s for s in SECTION_SHARES if s in sections]
        self.section_end = self.deadline

    def begin(self, section: str) -> float:
        shares = sum(SECTION_SHARES[s] for s in self.pending)
        now = time.monotonic()
        length = max(0.0, self.deadline - now) * SECTION_SHARES[section] / shares if shares else 0.0
        self.pending.remove(section)
        self.section_end = now + length
        return length

    def left(self) -> float:
        return max(0.0, min(self.section_end, self.deadline) - time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.start


NOTES: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)


def skip(what: str, why: str) -> None:
    line = f"SKIPPED {what}: {why}"
    NOTES.append(line)
    say(f"  {line}")


def gib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / GiB:.2f}"


def sig(x: float) -> str:
    """Large numbers with one decimal, small ones with three significant digits."""
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.3g}"


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


# ---------------------------------------------------------------------------------------------------------------
# precision modes, as evalsuite's adapters define them (models/card.py PRECISIONS, models/base.py)


def weight_dtype(mode: str):
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mode, torch.float32)


def autocast(mode: str, device):
    import torch

    if mode.startswith("amp_"):
        return torch.autocast(device.type, dtype={"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}[mode])
    return contextlib.nullcontext()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_gpu() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


# ---------------------------------------------------------------------------------------------------------------
# random-init models


@dataclass
class ModelSpec:
    name: str  # the evalsuite card it stands for
    kind: str  # open_clip | eva_native
    arch: str  # open_clip architecture, or the card whose config eva_native builds
    batch: int
    min_left: float  # seconds of budget worth starting it with
    size: int = 224
    folder: Path | None = None  # local-dir folder (open_clip), written once


def model_specs(s: Settings) -> dict[str, ModelSpec]:
    if s.smoke:
        return {"EVA02-CLIP-B-16": ModelSpec("EVA02-CLIP-B-16", "open_clip", "tiny", 8, 1, 32),
                "EVA02-CLIP-L-14": ModelSpec("EVA02-CLIP-L-14", "open_clip", "tiny", 8, 1, 32),
                "EVA-CLIP-8B": ModelSpec("EVA-CLIP-8B", "eva_native", "EVA-CLIP-8B", 4, 1, 28)}
    q = s.quick
    return {"EVA02-CLIP-B-16": ModelSpec("EVA02-CLIP-B-16", "open_clip", "EVA02-B-16", 256, 10),
            "EVA02-CLIP-L-14": ModelSpec("EVA02-CLIP-L-14", "open_clip", "EVA02-L-14", 128 if q else 256, 15),
            "EVA-CLIP-8B": ModelSpec("EVA-CLIP-8B", "eva_native", "EVA-CLIP-8B", 32 if q else 64, 40)}


def open_clip_config(spec: ModelSpec, pieces, s: Settings) -> tuple[dict, dict]:
    import open_clip

    if spec.arch == "tiny":
        return dict(pieces.TINY_MODEL_CFG), dict(pieces.TINY_PREPROCESS_CFG)
    cfg = open_clip.get_model_config(spec.arch)
    if cfg is None:
        raise RuntimeError(f"open_clip {open_clip.__version__} has no architecture {spec.arch}")
    card = pieces.find_card(spec.name)  # the card's preprocessing, so the CLI runs see the card's pixels
    p = card.preprocess
    return cfg, {"size": card.image_size, "mean": list(p.mean), "std": list(p.std),
                 "interpolation": p.interpolation, "resize_mode": p.resize_mode}


def build_open_clip(spec: ModelSpec, pieces, s: Settings, seed: int = 0):
    """A random-init open_clip CLIP of the architecture (CPU, fp32), written once as a local-dir folder."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg, preprocess = open_clip_config(spec, pieces, s)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg) if spec.arch == "tiny" else open_clip.create_model(spec.arch, pretrained=None)
    model.eval()
    if spec.folder is None:
        folder = s.scratch / "models" / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(folder / "open_clip_model.safetensors"))
        (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}))
        spec.folder = folder
    return model


def ensure_folder(spec: ModelSpec, pieces, s: Settings) -> Path:
    if spec.folder is None:
        say(f"  writing a random-init {spec.name} ({spec.arch}) local-dir folder")
        build_open_clip(spec, pieces, s)
        free_gpu()
    return spec.folder


def load_folder_tower(spec: ModelSpec, device):
    """The image tower of the local-dir folder's weights (the ones the CLI runs load), fp32 on ``device``."""
    import open_clip

    model = open_clip.create_model(f"local-dir:{spec.folder}", require_pretrained=True)
    return model.visual.to(device).eval().requires_grad_(False)


def build_tower(spec: ModelSpec, pieces, s: Settings, device):
    """The random-init image tower, fp32, on ``device``."""
    import torch

    if spec.kind == "open_clip":
        model = build_open_clip(spec, pieces, s)
        return model.visual.to(device).eval().requires_grad_(False)
    card = pieces.find_card(spec.arch)
    cfg = json.loads(json.dumps(card.config))
    # the text tower is not measured: a 1-layer stand-in keeps it from costing 0.7B parameters
    cfg["text_cfg"].update(layers=1, width=64, heads=1)
    if s.smoke:
        cfg["vision_cfg"].update(image_size=spec.size, layers=2, width=64, head_width=32)
    config = pieces.EvaClipConfig.from_dict(cfg, f"{card.file} (gpu_check)")
    spec.size = config.vision.image_size
    torch.manual_seed(0)
    with torch.device(device):  # timm's own random init, run on the device (seconds for 7.5B parameters)
        model = pieces.build_eva_clip(config, meta=False)
    return model.visual.eval().requires_grad_(False)


def count_flops(tower, size: int, device) -> float:
    """Forward FLOPs of one image (multiply-adds count 2), attention through the math kernel so every backend is
    counted alike."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        tower(x)
    return float(counter.get_total_flops())


@dataclass
class Forward:
    images_per_second: float
    batch: int
    peak_bytes: int | None
    weight_bytes: int
    finite: bool
    iters: int


def time_forward(tower, mode: str, batch: int, size: int, device, s: Settings, budget: Budget, pieces,
                 mean=None, std=None) -> Forward:
    """images/s of ``tower`` in ``mode`` on random uint8 pixels already on the device (normalised there, as
    evalsuite's encode_image does); one warm-up batch, then at least 2 batches and ``min_seconds``. Halves the
    batch on out-of-memory."""
    import torch

    mean = mean or pieces.OPENAI_MEAN
    std = std or pieces.OPENAI_STD
    dtype = weight_dtype(mode)
    tower.to(dtype)
    free_gpu()
    weight_bytes = sum(p.numel() * p.element_size() for p in tower.parameters())
    while True:
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            pixels = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)

            def step(pixels):
                with torch.inference_mode():
                    x = pieces.normalize_on_device(pixels, mean, std).to(dtype)
                    with autocast(mode, device):
                        return tower(x)

            step(pixels)
            sync(device)
            iters, start = 0, time.perf_counter()
            while True:
                out = step(pixels)
                sync(device)
                iters += 1
                spent = time.perf_counter() - start
                if iters >= 2 and (spent >= s.min_seconds or iters >= s.max_iters or budget.left() < 1):
                    break
            finite = bool(torch.isfinite(out.float()).all())
            peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
            del pixels, out
            free_gpu()  # cached blocks back to the device: the evalsuite runs of b and d are other processes
            return Forward(iters * batch / spent, batch, peak, weight_bytes, finite, iters)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not is_oom(exc) or batch == 1:
                raise
            pixels = out = None
            free_gpu()
            batch //= 2
            say(f"    out of memory; batch {batch * 2} -> {batch}")


def peak_tflops(s: Settings, cli_value: float | None) -> tuple[float | None, str]:
    if cli_value is not None:
        return cli_value, "--peak-tflops"
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV]), f"${PEAK_ENV}"
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in s.gpu_name.lower():
            return value, f"datasheet table ({key}, dense bf16)"
    return None, f"unknown device {s.gpu_name!r}: set ${PEAK_ENV} or --peak-tflops"


# ---------------------------------------------------------------------------------------------------------------
# generated data and tasks


def _write_jpeg(job) -> None:
    import numpy as np
    from PIL import Image

    path, index, width, height = job
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:height, 0:width]
    label = index % NUM_CLASSES
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    base[..., label % 3] = (base[..., label % 3] + 25 * label) % 256  # a class-dependent colour shift
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_jpegs(root: Path, task: str, n: int, width: int, height: int, s: Settings) -> list[Path]:
    """``root/<task>/class<k>/<i>.jpg``: gradients + noise with a class-dependent shift, written in parallel."""
    from multiprocessing import get_context

    jobs = []
    for i in range(n):
        folder = root / task / f"class{i % NUM_CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((str(folder / f"{i:06d}.jpg"), i, width, height))
    procs = max(1, min(os.cpu_count() or 1, 16))
    if n < 64 or procs == 1:
        for job in jobs:
            _write_jpeg(job)
    else:
        with get_context("fork").Pool(procs) as pool:
            for _ in pool.imap_unordered(_write_jpeg, jobs, chunksize=64):
                pass
    return [Path(j[0]) for j in jobs]


def write_task(include: Path, task: str) -> None:
    for sub in ("tasks", "prompts/classnames", "prompts/templates"):
        (include / sub).mkdir(parents=True, exist_ok=True)
    (include / "tasks" / f"{task}.yaml").write_text(
        f"name: {task}\ntype: classification\nversion: 1\nsource: {{kind: image_folder, args: {{}}}}\n"
        f"classnames: {task}\ntemplates: {task}\nnum_classes: {NUM_CLASSES}\nmetrics: [acc1, acc5]\n"
        "primary_metric: acc1\n")
    names = "[" + ", ".join(f"class{i}" for i in range(NUM_CLASSES)) + "]"
    (include / "prompts/classnames" / f"{task}.yaml").write_text(f"source: generated\nclassnames: {names}\n")
    (include / "prompts/templates" / f"{task}.yaml").write_text(
        "source: generated\ntemplates: ['a photo of a {c}.', 'a blurry photo of a {c}.']\n")


# ---------------------------------------------------------------------------------------------------------------
# evalsuite run through the CLI


@dataclass
class CliRun:
    label: str
    rc: int | None = None
    wall: float = 0.0
    images_per_second: float | None = None
    num_samples: int | None = None
    metrics: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)  # sample -> top5 string
    image_batch_limit: int | None = None
    peak_bytes: int | None = None
    oom_logged: bool = False
    error: str | None = None
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.error is None


def run_cli(label: str, args: list[str], task: str, out: Path, s: Settings, budget: Budget,
            env_extra: dict | None = None) -> CliRun:
    """``python -m evalsuite run ARGS --output-dir OUT`` in a new process group, killed when the section's
    budget runs out; the task CSV, predictions, run.json and the wrapper's peak memory line are read back."""
    run = CliRun(label, log=s.scratch / "logs" / f"{out.name}.log")
    timeout = budget.left()
    if timeout < 5:
        run.error = "budget spent"
        return run
    run.log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EVALSUITE_CACHE_DIR": str(s.scratch / "cache"), "PYTHONPATH": str(REPO) + (
        os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""), **(env_extra or {})}
    cmd = [sys.executable, "-c", WRAPPER, "run", *args, "--output-dir", str(out), "--device", s.device,
           "--no-progress", "--bootstrap", "0"]
    if s.workers is not None:
        cmd += ["--workers", str(s.workers)]
    start = time.perf_counter()
    with run.log.open("w") as log:
        log.write(" ".join(cmd[:2] + ["WRAPPER"] + cmd[3:]) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                                start_new_session=True)
        try:
            run.rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its DataLoader workers (its own process group)
            proc.wait()
            run.error = f"killed after {timeout:.0f} s (section budget)"
    run.wall = time.perf_counter() - start
    text = run.log.read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith("GPU_CHECK "):
            run.peak_bytes = json.loads(line[len("GPU_CHECK "):]).get("peak_bytes")
    # evalsuite's back-off warning ("CUDA out of memory at image batch N; encoding in chunks of M")
    run.oom_logged = "out of memory" in text.lower()
    if run.rc not in (0, None) and run.error is None:
        tail = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("GPU_CHECK ")][-6:]
        run.error = f"exit {run.rc}: " + " | ".join(tail)[-600:]
    found = sorted(out.glob(f"*/{task}.csv"))
    if found:
        with found[0].open(newline="") as f:
            for row in csv.DictReader(f):
                run.metrics[row["metric"]] = float(row["value"])
                run.images_per_second = float(row["images_per_second"]) if row["images_per_second"] else None
                run.num_samples = int(row["num_samples"])
        preds = found[0].with_name(f"{task}.predictions.csv")
        if preds.is_file():
            with preds.open(newline="") as f:
                run.predictions = {r["sample"]: r["top5"] for r in csv.DictReader(f)}
        manifest = found[0].with_name("run.json")
        if manifest.is_file():
            run.image_batch_limit = json.loads(manifest.read_text()).get("image_batch_limit")
    elif run.error is None:
        run.error = "no result CSV"
    return run


def top1_agreement(a: CliRun, b: CliRun) -> tuple[int, int] | None:
    if not a.predictions or not b.predictions:
        return None
    common = set(a.predictions) & set(b.predictions)
    same = sum(a.predictions[k].split()[0] == b.predictions[k].split()[0] for k in common)
    return same, len(common)


def worth_starting(section: str, budget: Budget, needed: float) -> bool:
    if budget.left() >= needed:
        return True
    skip(f"section {section}", f"{budget.left():.0f} s left for it, about {needed:.0f} s needed")
    return False


def describe_failure(run: CliRun) -> None:
    say(f"    {run.label}: FAILED ({run.error}); log {run.log} (kept with --keep DIR)")
    NOTES.append(f"FAILED {run.label}: {run.error}")


# ---------------------------------------------------------------------------------------------------------------
# sections


def section_a(s: Settings, budget: Budget, pieces, specs, results) -> None:
    import torch

    device = torch.device(s.device)
    say(f"[a] image-tower forward images/s per precision mode vs the FLOP bound ({budget.begin('a'):.0f} s)")
    if s.peak_tflops:
        say(f"    peak dense bf16: {s.peak_tflops:.1f} TFLOP/s ({s.peak_source})")
    else:
        say(f"    no FLOP bound: {s.peak_source}")
    say(f"    float32 matmul precision: {torch.get_float32_matmul_precision()} (evalsuite leaves the default;"
        " fp32 is plain fp32, no TF32)")
    rows = results.setdefault("a", {})
    say("    (FLOP bound = peak dense bf16 FLOP/s / forward FLOPs per image, for every mode: the fp32 rows can"
        " reach only a small share of it)")
    for spec in specs.values():
        if budget.left() < spec.min_left:
            skip(f"a {spec.name}", f"{budget.left():.0f} s left of the section's budget, {spec.min_left:.0f} s needed")
            continue
        start = time.perf_counter()
        try:
            tower = build_tower(spec, pieces, s, device)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not is_oom(exc):
                raise
            free_gpu()
            skip(f"a {spec.name}", f"the fp32 tower does not fit in GPU memory ({str(exc).splitlines()[0][:120]})")
            continue
        params = sum(p.numel() for p in tower.parameters())
        flops = count_flops(tower, spec.size, device)
        bound = s.peak_tflops * 1e12 / flops if s.peak_tflops else None
        say(f"    {spec.name}: {sig(params / 1e6)}M parameters (image tower), {sig(flops / 1e9)} GFLOP/image,"
            f" FLOP bound {fmt(bound, 0)} images/s; built in {time.perf_counter() - start:.1f} s")
        model_rows = rows.setdefault(spec.name, {"params": params, "gflops": flops / 1e9, "bound": bound,
                                                 "modes": {}})
        for mode in MODES:
            if budget.left() < 2:
                skip(f"a {spec.name} {mode}", "section budget spent")
                continue
            try:
                r = time_forward(tower, mode, spec.batch, spec.size, device, s, budget, pieces)
            except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
                if not is_oom(exc):
                    raise
                free_gpu()
                skip(f"a {spec.name} {mode}", "out of memory at batch 1")
                continue
            share = r.images_per_second / bound if bound else None
            model_rows["modes"][mode] = {"images_per_second": r.images_per_second, "batch": r.batch,
                                         "peak_bytes": r.peak_bytes, "weight_bytes": r.weight_bytes,
                                         "finite": r.finite, "of_bound": share}
            say(f"      {mode:8s} batch {r.batch:4d}: {r.images_per_second:10,.1f} images/s"
                f"  {'' if share is None else f'{100 * share:5.1f}% of bound'}  peak {gib(r.peak_bytes)} GiB"
                f" (weights {gib(r.weight_bytes)}){'' if r.finite else '  [non-finite outputs]'}")
        del tower
        free_gpu()


def section_b(s: Settings, budget: Budget, pieces, specs, results, data: dict) -> None:
    import torch

    device = torch.device(s.device)
    say(f"[b] end-to-end evalsuite run vs pure forward, per decoder ({budget.begin('b'):.0f} s)")
    if not worth_starting("b", budget, 5 if s.smoke else 30):
        return
    spec = specs["EVA02-CLIP-B-16"]
    ensure_folder(spec, pieces, s)
    files = ensure_e2e_images(s, data)
    write_task(s.scratch / "inc", E2E_TASK)
    mode, batch = s.e2e_precision, s.e2e_batch
    tower = load_folder_tower(spec, device)
    forward = [time_forward(tower, mode, batch, spec.size, device, s, budget, pieces).images_per_second]
    say(f"    {len(files)} JPEGs 500x375, {spec.name} (random init, local-dir), {mode}, batch {batch},"
        f" workers {s.workers if s.workers is not None else 'default'}; pure forward {forward[0]:,.1f} images/s")
    base = ["--model", f"local-dir:{spec.folder}", "--tasks", E2E_TASK, "--data-root", str(s.scratch / "data"),
            "--include-path", str(s.scratch / "inc"), "--batch-size", str(batch), "--precision", mode,
            "--no-cache-features"]
    plan = [(f"decoder {d}", ["--decoder", d]) for d in DECODERS]
    plan += [("pil + --cache-pixels, 1st run (fills the cache)", ["--decoder", "pil", "--cache-pixels"]),
             ("pil + --cache-pixels, 2nd run (reads it)", ["--decoder", "pil", "--cache-pixels"])]
    runs = []
    for i, (label, extra) in enumerate(plan):
        if "cuda" in extra and device.type != "cuda":
            skip(f"b {label}", "no CUDA device (nvJPEG decodes on the GPU)")
            continue
        if budget.left() < 8:
            skip(f"b {label}", "section budget spent")
            continue
        run = run_cli(label, base + extra, E2E_TASK, s.scratch / f"out_b{i}", s, budget)
        runs.append(run)
        if not run.ok:
            describe_failure(run)
            continue
        say(f"    {label:48s} {fmt(run.images_per_second):>9s} images/s (task), wall {run.wall:5.1f} s,"
            f" peak {gib(run.peak_bytes)} GiB, acc1 {run.metrics.get('acc1', float('nan')):.4f}")
    if budget.left() > 2:
        forward.append(time_forward(tower, mode, batch, spec.size, device, s, budget, pieces).images_per_second)
    del tower
    free_gpu()
    pure = sum(forward) / len(forward)
    pil = next((r for r in runs if r.label == "decoder pil" and r.ok), None)
    rows = []
    for run in runs:
        agree = top1_agreement(pil, run) if pil is not None and run is not pil else None
        rows.append({"label": run.label, "ok": run.ok, "images_per_second": run.images_per_second,
                     "ratio": run.images_per_second / pure if run.ok and run.images_per_second else None,
                     "wall": run.wall, "peak_bytes": run.peak_bytes, "acc1": run.metrics.get("acc1"),
                     "top1_same_as_pil": agree, "error": run.error})
    results["b"] = {"model": spec.name, "precision": mode, "batch": batch, "images": len(files),
                    "forward_images_per_second": forward, "pure_forward": pure, "runs": rows}
    data["b_runs"] = runs
    say(f"    pure forward (mean of {len(forward)}: {', '.join(f'{f:,.1f}' for f in forward)}): {pure:,.1f} images/s")
    for row in rows:
        if row["ok"]:
            agree = row["top1_same_as_pil"]
            say(f"      {row['label']:48s} ratio {fmt(row['ratio'], 2):>5s}"
                f"{'' if agree is None else f'   top-1 = pil on {agree[0]}/{agree[1]}'}")


def ensure_e2e_images(s: Settings, data: dict) -> list[Path]:
    if "e2e_files" not in data:
        start = time.perf_counter()
        data["e2e_files"] = write_jpegs(s.scratch / "data", E2E_TASK, s.e2e_images, 500, 375, s)
        say(f"    wrote {s.e2e_images} JPEGs (500x375) in {time.perf_counter() - start:.1f} s")
    return data["e2e_files"]


def shared_imagenet() -> Path | None:
    root = Path(os.environ.get("EVALSUITE_SHARED_DATA", REPO.parent / "shared" / "data")) / "imagenet-sample"
    return root if root.is_dir() and any(root.glob("*.JPEG")) else None


def section_c(s: Settings, budget: Budget, pieces, specs, results, data: dict) -> None:
    import torch
    import torch.nn.functional as F

    device = torch.device(s.device)
    say(f"[c] nvJPEG (cuda) decoder vs pil: pixels and features ({budget.begin('c'):.0f} s)")
    if not worth_starting("c", budget, 2 if s.smoke else 8):
        return
    other_name = "cuda" if device.type == "cuda" else "tensor"
    if other_name != "cuda":
        skip("c cuda decoder", "no CUDA device; comparing the tensor decoder with pil instead (same code path)")
    sample = shared_imagenet()
    if sample is not None:
        files = sorted(sample.glob("*.JPEG"))[: s.decode_images]
        what = f"ImageNet sample ({sample})"
    else:
        files = ensure_e2e_images(s, data)[: s.decode_images]
        what = "generated 500x375 JPEGs"
    spec = specs["EVA02-CLIP-B-16"]
    ensure_folder(spec, pieces, s)
    size = spec.size
    pil = pieces.UInt8Pixels(pieces.PixelSpec(size, "shortest", "bicubic", "pil"))
    other = pieces.UInt8Pixels(pieces.PixelSpec(size, "shortest", "bicubic", other_name))
    for warm in files[:2]:  # first calls: libraries, nvJPEG's handle
        pil.from_file(str(warm))
        item = other.from_file(str(warm))
        if other_name == "cuda":
            other.finish([item], device)
    sync(device)
    start = time.perf_counter()
    pil_px = torch.stack([pil.from_file(str(f)) for f in files])
    pil_ms = (time.perf_counter() - start) / len(files) * 1000
    start = time.perf_counter()
    decoded, failures = {}, []  # index -> pixels; (file, error) of files the decoder refused
    for i in range(0, len(files), 64):
        chunk = list(range(i, min(i + 64, len(files))))
        items = [other.from_file(str(files[j])) for j in chunk]
        try:
            out = other.finish(items, device).cpu() if other_name == "cuda" else torch.stack(items)
            decoded.update(zip(chunk, out))
        except Exception:  # noqa: BLE001 - a batch the decoder refuses: find the files, one at a time
            for j, item in zip(chunk, items):
                try:
                    decoded[j] = other.finish([item], device).cpu()[0] if other_name == "cuda" else item
                except Exception as exc:  # noqa: BLE001 - reported, and left out of the comparison
                    failures.append((files[j].name, f"{type(exc).__name__}: {str(exc).splitlines()[0][:150]}"))
    sync(device)
    other_ms = (time.perf_counter() - start) / len(files) * 1000
    if failures:
        NOTES.append(f"c: {other_name} could not decode {len(failures)} of {len(files)} files, e.g."
                     f" {failures[0][0]} ({failures[0][1]})")
        say(f"    {other_name} could not decode {len(failures)} of {len(files)} files, e.g. {failures[:3]}")
    if not decoded:
        skip("c comparison", f"{other_name} decoded none of the files")
        return
    keep = sorted(decoded)
    pil_px, other_px = pil_px[keep], torch.stack([decoded[j] for j in keep])
    diff = (pil_px.int() - other_px.int()).abs()
    tower = load_folder_tower(spec, device)
    feats = []
    with torch.inference_mode():
        for px in (pil_px, other_px):
            out = [tower(pieces.normalize_on_device(b.to(device), pieces.OPENAI_MEAN, pieces.OPENAI_STD))
                   for b in px.split(64)]
            feats.append(F.normalize(torch.cat(out).float(), dim=-1))
    cosine = (feats[0] * feats[1]).sum(-1)
    del tower
    free_gpu()
    r = {"decoder": other_name, "images": len(keep), "refused": len(failures), "source": what,
         "max_abs": int(diff.max()),
         "mean_abs": float(diff.float().mean()), "share_differ": float((diff > 0).float().mean()),
         "cos_min": float(cosine.min()), "cos_mean": float(cosine.mean()),
         "one_minus_cos_max": float((1 - cosine).max()), "one_minus_cos_mean": float((1 - cosine).mean()),
         "pil_ms": pil_ms, "other_ms": other_ms}
    results["c"] = r
    say(f"    {len(files)} images: {what}; {size} px, shortest side + centre crop, bicubic")
    say(f"    {other_name} vs pil pixels: max {r['max_abs']} levels, mean {r['mean_abs']:.4f} levels,"
        f" {100 * r['share_differ']:.2f}% of values differ")
    say(f"    random {spec.name} fp32 image features: 1 - cosine max {r['one_minus_cos_max']:.2e}, mean"
        f" {r['one_minus_cos_mean']:.2e}")
    say(f"    ms/image in this process: pil {pil_ms:.2f} (one process), {other_name} {other_ms:.2f}"
        f"{' (batches of 64 incl. file reads)' if other_name == 'cuda' else ''}")


def per_image_bytes(s: Settings, budget: Budget, pieces, spec: ModelSpec, results, device) -> tuple:
    """(GPU memory per image of the tower's forward in the OOM run's precision, weight bytes): from (a), else
    measured now at batch 32."""
    row = results.get("a", {}).get(spec.name, {}).get("modes", {}).get(s.oom_precision)
    if row and row.get("peak_bytes"):
        return (row["peak_bytes"] - row["weight_bytes"]) / row["batch"], row["weight_bytes"]
    tower = load_folder_tower(spec, device)
    r = time_forward(tower, s.oom_precision, 32, spec.size, device, s, budget, pieces)
    del tower
    free_gpu()
    return ((r.peak_bytes - r.weight_bytes) / r.batch, r.weight_bytes) if r.peak_bytes else (None, r.weight_bytes)


def section_d(s: Settings, budget: Budget, pieces, specs, results, data: dict) -> None:
    import torch

    device = torch.device(s.device)
    say(f"[d] CUDA out-of-memory back-off: batch 65536 vs batch 256, same metrics ({budget.begin('d'):.0f} s)")
    if not worth_starting("d", budget, 5 if s.smoke else 40):
        return
    spec = specs["EVA02-CLIP-L-14"]
    ensure_folder(spec, pieces, s)
    fraction, small_batch = None, (4 if s.smoke else 256)
    if device.type == "cuda":
        per_image, weights = per_image_bytes(s, budget, pieces, spec, results, device)
        free_gpu()
        if not per_image or per_image <= 0:
            skip("d", f"could not measure the memory per image of {spec.name} ({per_image})")
            return
        free, total = torch.cuda.mem_get_info(device)
        need = math.ceil(2 * max(free - weights, 0) / per_image)
        n = min(need, s.oom_max_images)
        if need > s.oom_max_images:
            # cap the child's memory so that n images still need twice what it may use
            allowed = weights + n * per_image / 2 + 1 * GiB
            fraction = min(1.0, allowed / total)
            say(f"    {need} images would be needed for a full-GPU OOM (> --oom-max-images {s.oom_max_images}):"
                f" the run's GPU memory is capped to {gib(allowed)} GiB (set_per_process_memory_fraction"
                f" {fraction:.3f}) so {n} images need twice that")
            NOTES.append(f"d: child GPU memory capped to {gib(allowed)} GiB (fraction {fraction:.3f})")
        say(f"    {spec.name} {s.oom_precision}: {per_image / 2**20:.1f} MiB/image measured, {gib(free)} GiB free"
            f" of {gib(total)}: {n} images, one batch needs ~{gib(n * per_image + weights)} GiB")
    else:
        n = 12
        skip("d out-of-memory", "no CUDA device: the back-off is not exercised (CPU allocations do not fail"
                                " this way); the big-batch run is still compared with the small-batch one")
    if not worth_starting("d (the two runs)", budget, 5 if s.smoke else 30):
        return
    start = time.perf_counter()
    write_jpegs(s.scratch / "data", OOM_TASK, n, 256, 256, s)
    write_task(s.scratch / "inc", OOM_TASK)
    say(f"    wrote {n} JPEGs (256x256) in {time.perf_counter() - start:.1f} s")
    precision = s.oom_precision if device.type == "cuda" else "fp32"
    base = ["--model", f"local-dir:{spec.folder}", "--tasks", OOM_TASK, "--data-root", str(s.scratch / "data"),
            "--include-path", str(s.scratch / "inc"), "--precision", precision, "--decoder", "tensor",
            "--no-cache-features", "--cache-pixels"]
    env = {"GPU_CHECK_MEMORY_FRACTION": str(fraction)} if fraction else None
    small = run_cli(f"batch {small_batch} (fills the pixel cache)", base + ["--batch-size", str(small_batch)],
                    OOM_TASK, s.scratch / "out_d_small", s, budget, env)
    if not small.ok:
        describe_failure(small)
        return
    say(f"    {small.label}: acc1 {small.metrics.get('acc1'):.4f}, {fmt(small.images_per_second)} images/s,"
        f" wall {small.wall:.1f} s, peak {gib(small.peak_bytes)} GiB")
    big = run_cli("batch 65536 (reads the pixel cache)", base + ["--batch-size", "65536"], OOM_TASK,
                  s.scratch / "out_d_big", s, budget, env)
    if not big.ok:
        describe_failure(big)
        results["d"] = {"images": n, "ok": False, "error": big.error}
        return
    same_metrics = small.metrics == big.metrics
    common = set(small.predictions) & set(big.predictions)
    same_preds = sum(small.predictions[k] == big.predictions[k] for k in common)
    oom_ok = big.oom_logged and (big.image_batch_limit or n) < n
    results["d"] = {"images": n, "small_batch": small_batch, "precision": precision, "memory_fraction": fraction,
                    "oom": big.oom_logged, "image_batch_limit": big.image_batch_limit, "small": small.metrics,
                    "big": big.metrics,
                    "same_metrics": same_metrics, "same_predictions": [same_preds, len(common)],
                    "peak_small": small.peak_bytes, "peak_big": big.peak_bytes, "wall_big": big.wall}
    say(f"    {big.label}: acc1 {big.metrics.get('acc1'):.4f}, wall {big.wall:.1f} s, peak {gib(big.peak_bytes)} GiB;"
        f" out-of-memory logged: {'yes' if big.oom_logged else 'no'}; image_batch_limit in run.json:"
        f" {big.image_batch_limit}")
    say(f"    metrics equal: {'yes' if same_metrics else 'NO'} ({small.metrics} vs {big.metrics});"
        f" top-5 predictions equal on {same_preds}/{len(common)} samples")
    if device.type == "cuda" and not oom_ok:
        NOTES.append("d: no out-of-memory happened (back-off not exercised); --keep DIR keeps the run logs")
        say("    NOTE: no out-of-memory happened; the back-off was not exercised")


def section_e(s: Settings, results) -> None:
    say("[e] peak GPU memory (torch.cuda.max_memory_allocated), GiB")
    a, b, d = results.get("a", {}), results.get("b", {}), results.get("d", {})
    if not (a or b or d):
        skip("e", "nothing measured: e reports the peaks of sections a, b and d")
        return
    for name, row in a.items():
        cells = ", ".join(f"{m} {gib(v['peak_bytes'])} (weights {gib(v['weight_bytes'])})"
                          for m, v in row["modes"].items())
        say(f"    {name} forward, batch {next(iter(row['modes'].values()))['batch'] if row['modes'] else '-'}:"
            f" {cells}")
    for row in b.get("runs", []):
        say(f"    evalsuite run, {row['label']}: {gib(row['peak_bytes'])}")
    if d:
        say(f"    evalsuite run, OOM check: batch {d.get('small_batch')} {gib(d.get('peak_small'))},"
            f" batch 65536 {gib(d.get('peak_big'))}")


# ---------------------------------------------------------------------------------------------------------------
# summary


def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table (then an empty line)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def summary(s: Settings, results, budget: Budget) -> str:
    import torch

    mode_note = ", smoke (tiny models, CPU)" if s.smoke else ", quick" if s.quick else ""
    title = (f"### gpu_check: {s.gpu_name}, torch {torch.__version__}{mode_note}; peak dense bf16"
             f" {fmt(s.peak_tflops)} TFLOP/s ({s.peak_source}); {budget.elapsed():.0f} s")
    lines = [title, ""]
    a = results.get("a")
    if a:
        rows = []
        for name, row in a.items():
            for mode, v in row["modes"].items():
                share = "n/a" if v["of_bound"] is None else f"{100 * v['of_bound']:.1f}%"
                rows.append([name, sig(row["gflops"]), mode, v["batch"], fmt(v["images_per_second"]),
                             fmt(row["bound"], 0), share, gib(v["peak_bytes"])])
        lines += table(["image tower (random init)", "GFLOP/img", "mode", "batch", "images/s", "FLOP bound (bf16)",
                        "of bound", "peak GiB"], rows)
    b = results.get("b")
    if b:
        rows = []
        for row in b["runs"]:
            agree = row["top1_same_as_pil"]
            if row["ok"]:
                rows.append([row["label"], fmt(row["images_per_second"]), fmt(b["pure_forward"]), fmt(row["ratio"], 2),
                             "-" if agree is None else f"{agree[0]}/{agree[1]}", gib(row["peak_bytes"])])
            else:
                rows.append([row["label"], "failed", "", "", "", ""])
        what = f"evalsuite run, {b['model']} {b['precision']}, {b['images']} JPEGs 500x375, batch {b['batch']}"
        lines += table([what, "task images/s", "pure forward", "ratio", "top-1 = pil", "peak GiB"], rows)
    c = results.get("c")
    if c:
        lines += table(["decoder vs pil", "images (refused)", "max px diff", "mean px diff", "values differing",
                        "features 1-cos max", "1-cos mean"],
                       [[c["decoder"], f"{c['images']} ({c['refused']})", c["max_abs"], f"{c['mean_abs']:.4f}",
                         f"{100 * c['share_differ']:.2f}%", f"{c['one_minus_cos_max']:.2e}",
                         f"{c['one_minus_cos_mean']:.2e}"]])
    d = results.get("d")
    if d and "same_metrics" in d:
        capped = f", memory capped (fraction {d['memory_fraction']:.3f})" if d.get("memory_fraction") else ""
        same = d["same_predictions"]
        lines += table(["OOM back-off (EVA02-CLIP-L-14)", "images", "out of memory", "batch used", "metrics equal",
                        "top-5 equal"],
                       [[f"--batch-size 65536 vs {d['small_batch']}, {d['precision']}{capped}", d["images"],
                         "yes" if d["oom"] else "no", d["image_batch_limit"], "yes" if d["same_metrics"] else "NO",
                         f"{same[0]}/{same[1]}"]])
    if NOTES:
        lines += ["Skipped / failed:"] + [f"- {n}" for n in NOTES]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated of a,b,c,d,e (default all)")
    parser.add_argument("--quick", action="store_true", help="smaller data and shorter timings (about half)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="every section on the CPU with tiny models and a few images (tests the script)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the sections (default 420; 240 with --quick; startup and clean-up add"
                             " ~15 s)")
    parser.add_argument("--images", type=int, default=None, help="JPEGs of section b (default 2000; quick 800)")
    parser.add_argument("--workers", type=int, default=None, help="evalsuite run --workers (default: evalsuite's)")
    parser.add_argument("--precision", default="amp_fp16", choices=MODES,
                        help="precision of the evalsuite runs of b and d (default amp_fp16, the EVA02 cards')")
    parser.add_argument("--oom-max-images", type=int, default=None,
                        help="largest task of section d (default 40000; quick 16000)")
    parser.add_argument("--peak-tflops", type=float, default=None, help=f"peak dense bf16 TFLOP/s (or ${PEAK_ENV})")
    parser.add_argument("--json", type=Path, default=None, help="also write every number to this JSON file")
    parser.add_argument("--keep", type=Path, default=None, help="scratch folder to keep (default: a temp folder)")
    args = parser.parse_args(argv)
    sections = tuple(x.strip() for x in args.sections.split(",") if x.strip())
    unknown = [x for x in sections if x not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--sections: expected some of {','.join(SECTIONS)}, got {args.sections!r}")
    args.sections = sections
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False); nothing"
              " measured. Run it on a GPU machine, or with --cpu-smoke to exercise it on the CPU.", file=sys.stderr)
        return 1
    smoke, quick = args.cpu_smoke, args.quick
    s = Settings(
        device="cpu" if smoke else "cuda", smoke=smoke, quick=quick, sections=args.sections,
        budget=args.budget or (300 if smoke else 240 if quick else 420),
        e2e_images=args.images or (24 if smoke else 800 if quick else 2000),
        e2e_precision="fp32" if smoke else args.precision,  # half precision on a CPU is only slower
        e2e_batch=8 if smoke else 256, oom_precision="fp32" if smoke else args.precision,
        oom_max_images=args.oom_max_images or (12 if smoke else 16000 if quick else 40000),
        workers=args.workers if args.workers is not None else (0 if smoke else None),
        min_seconds=0.05 if smoke else 1.0 if quick else 2.0, max_iters=3 if smoke else 200,
        decode_images=8 if smoke else 128 if quick else 256)
    if smoke:
        s.gpu_name = "CPU (smoke)"
    else:
        s.gpu_name = torch.cuda.get_device_name(0)
    s.peak_tflops, s.peak_source = peak_tflops(s, args.peak_tflops)
    pieces = evalsuite_pieces()
    budget = Budget(s.budget, s.sections)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="evalsuite-gpu-check-"))
    scratch.mkdir(parents=True, exist_ok=True)
    s.scratch = scratch
    say(f"gpu_check: {s.gpu_name}, torch {torch.__version__}, sections {','.join(s.sections)}, budget {s.budget:.0f} s,"
        f" scratch {scratch}{' (CPU smoke: tiny models, cuda decoder skipped)' if smoke else ''}")
    specs = model_specs(s)
    results: dict = {}
    data: dict = {}
    steps = {"a": lambda: section_a(s, budget, pieces, specs, results),
             "b": lambda: section_b(s, budget, pieces, specs, results, data),
             "c": lambda: section_c(s, budget, pieces, specs, results, data),
             "d": lambda: section_d(s, budget, pieces, specs, results, data)}
    failed = False
    try:
        for section in ("a", "b", "c", "d"):
            if section not in s.sections:
                continue
            try:
                steps[section]()
            except Exception as exc:  # noqa: BLE001 - one section's failure must not hide the others
                failed = True
                NOTES.append(f"FAILED section {section}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                say(f"  section {section} FAILED: {type(exc).__name__}: {exc}")
                import traceback

                traceback.print_exc()
                free_gpu()
        if "e" in s.sections:
            section_e(s, results)
        text = summary(s, results, budget)
        say("")
        say(text)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(s).items()},
                                             "results": results, "notes": NOTES}, indent=2, default=str))
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    say(f"gpu_check: done in {budget.elapsed():.0f} s{' with failures' if failed else ''}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
