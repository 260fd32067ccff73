"""The Runner: one model, many tasks. Validate everything first, load the model once (only if some task needs
it), then per task: skip if done, else evaluate, write its CSV atomically, log one line."""

from __future__ import annotations

import contextlib
import json
import logging
import platform
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Optional

from . import __version__
from .catalog import Catalog
from .config import RunConfig
from .distributed import in_step, is_writer
from .errors import EvalsuiteError, TasksFailedError, UserInputError
from .models.card import ModelCard
from .models.loading import load_model, resolve_card, results_dirname
from .progress import progress_mode
from .resources import default_cache_dir
from .results import (
    COUNT_MISMATCHES,
    TaskIdentity,
    atomic_write_text,
    check_writable_folder,
    count_message,
    format_table,
    is_done,
    move_to_history,
    primary_row,
    read_task_csv,
    summary_row,
    task_rows,
    write_run_manifest,
    write_suites,
    write_summary,
    write_task_csv,
)
from .tasks import build_task
from .tasks.base import RunContext, Task

log = logging.getLogger("evalsuite")


@dataclass
class RunReport:
    model_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # task -> one-line reason
    bad_input: list[str] = field(default_factory=list)  # failed tasks whose reason is the user's input (exit 2)
    flagged: dict[str, str] = field(default_factory=dict)  # task -> why its numbers need a look
    transforms: dict[str, dict] = field(default_factory=dict)  # best-of-both: per task the winner and both values
    history: dict[str, str] = field(default_factory=dict)  # task -> where its replaced earlier result went
    table: str = ""


class Runner:
    def __init__(self, config: RunConfig, catalog: Optional[Catalog] = None, model=None,
                 invocation: str = "(Python API)") -> None:
        """``model``: a ``ModelAdapter`` already built (the Python API's in-memory models); else ``config.model``
        names the card and the model is loaded when some task needs it. ``invocation``: how the run was asked for
        (the CLI's arguments), the first line of run.log."""
        self.config, self.invocation = config, invocation
        self.catalog = catalog or Catalog.load(config.include_paths)
        # strict at the edges: every selected task, its prompts and its source arguments are checked here,
        # before any data is read or any weights are loaded
        specs = self.catalog.select(config.tasks)
        self.tasks: list[Task] = [build_task(s, config.include_paths) for s in specs]
        if model is not None:
            self.card: ModelCard = model.card
            self.adapter_cls = type(model)
        else:
            self.card = resolve_card(config.model, config.weights, config.include_paths, arch=config.arch,
                                     trust_remote_code=config.trust_remote_code)
            require_optional(ADAPTER_EXTRAS.get(self.card.adapter))
            from .models.loading import ADAPTERS

            self.adapter_cls = ADAPTERS.get(self.card.adapter)
        self.model_dir = config.output_dir / results_dirname(self.card, self.adapter_cls.weights_identity(self.card))
        self._model = model
        self.encoder = None  # the run's Encoder (set in run)

    def model_fingerprint(self) -> str:
        from .models.base import model_fingerprint, resolve_device, resolve_precision

        if self._model is not None:  # an in-memory model: its own device and precision
            device, precision = self._model.device, self._model.precision
        else:
            device = resolve_device(self.config.device)
            precision = resolve_precision(self.card, device, self.config.precision)
        adapter_cls = self.adapter_cls
        self.device, self.precision = device, precision
        if self.config.decoder == "cuda" and device.type != "cuda":
            raise UserInputError(f"--decoder cuda needs a CUDA device (this run uses {device}); use --decoder"
                                 " tensor")
        self.weights_used = adapter_cls.describe_weights(self.card)
        return model_fingerprint(adapter_cls, self.card, precision)

    def _load_model(self):
        if self._model is None:
            log.info("loading model %s (adapter %s)", self.card.name, self.card.adapter)
            self._model = load_model(self.card, self.config.device, self.config.precision)
            log.info("model loaded on %s, precision %s, fingerprint %s", self._model.device,
                     self._model.precision, self._model.fingerprint())
        return self._model

    def _preprocess_description(self) -> Optional[dict]:
        known = self.encoder.known_preprocess() if self.encoder is not None else None
        return known if known is not None else asdict_or_none(self.card.preprocess)

    def run(self) -> RunReport:
        report = RunReport(self.model_dir)
        # before any data is listed or weights load: a result that cannot be saved is not computed (every rank
        # stops alike when rank 0 cannot write)
        in_step(lambda: check_writable_folder(self.model_dir, "--output-dir") if is_writer() else None)
        with run_log(self.model_dir / "run.log" if is_writer() else None, self.invocation):
            self._warn_if_output_dir_is_a_model_folder()
            return self._run(report)

    def _warn_if_output_dir_is_a_model_folder(self) -> None:
        """``--output-dir results/<model>``: this run's folder lands inside another run's, where reports on the
        outer folder do not read it."""
        out = self.config.output_dir
        held = sorted(p.name for p in out.glob("*.csv") if p.stem in self.catalog.tasks) if out.is_dir() else []
        if held and is_writer():
            log.warning("--output-dir %s holds task results itself (%s): it is a model's results folder, and this"
                        " run writes into %s inside it, which aggregate, check and export on %s do not read; give"
                        " the folder above it", out, ", ".join(held[:3]), self.model_dir, out)

    def _run(self, report: RunReport) -> RunReport:
        cfg = self.config
        from .housekeeping import remove_stale_temp_files
        remove_stale_temp_files(default_cache_dir(), self.model_dir)  # killed writes' temp files, by age and owner
        ctx = RunContext(data_root=cfg.data_root, limit=cfg.limit, log=log, bootstrap_iterations=cfg.bootstrap,
                         verify_data=cfg.verify_data,
                         resize_mode=cfg.transform if cfg.transform in ("shortest", "squash") else None)
        model_fp = self.model_fingerprint()
        self.task_fingerprints = {}
        pending = []
        for task in self.tasks:
            # find the data first (a listing, no decoding): it is part of the fingerprint, and a missing dataset
            # is reported before any weights load
            if not self._attempt(task, report, partial(task.prepare, ctx)):
                continue
            self.task_fingerprints[task.name] = task.fingerprint(cfg.limit, cfg.transform, cfg.decoder)
            path = self.model_dir / f"{task.name}.csv"
            if (cfg.resume and is_done(path, model_fp, self.task_fingerprints[task.name])
                    and self._same_expected_counts(task, path)):
                log.info("%s: already done (%s), skipped; --no-resume re-runs it", task.name, path)
                report.skipped.append(task.name)
                self._reflag_skipped(task, path, report)
            elif cfg.resume and self._full_result_here(task, path, model_fp):
                log.info("%s: a full result of this model and task is already here (%s); a --limit run does not"
                         " replace it with a subset, skipped (--no-resume evaluates the subset, moving the full"
                         " result to history/)", task.name, path)
                report.skipped.append(task.name)
                self._reflag_skipped(task, path, report)
            else:
                pending.append(task)
        from .encoding.encoder import Encoder, EncoderSettings, ModelLoadFailed

        settings = EncoderSettings(cfg.batch_size, cfg.workers, progress_mode(cfg.progress), cfg.decoder,
                                   default_cache_dir() if cfg.cache_features else None,
                                   default_cache_dir() if cfg.cache_pixels else None)
        self.encoder = Encoder(settings, model_fp, self.device, self._load_model, self._model)
        # every evaluation of the run (best-of-both: two per task) with its inputs, so the Encoder can decode
        # each image set while the one before it is scored and written
        plan = [(task, mode, task.inputs(replace(ctx, resize_mode=mode) if mode else ctx))
                for task in pending for mode in self._resize_modes(task)]
        try:  # a model that cannot load stops the run (exit 2), it is no task's failure
            self.encoder.plan([inputs.images for _, _, inputs in plan])
            for number, task in enumerate(pending, start=1):
                log.info("[%d/%d] %s", number, len(pending), task.name)
                evaluations = [(mode, inputs) for t, mode, inputs in plan if t is task]
                self._run_task(task, evaluations, ctx, model_fp, report)
        except ModelLoadFailed as exc:
            raise exc.error from None
        finally:
            self.encoder.close()
        if pending and not self.encoder.loaded:
            log.info("model %s not loaded: every image feature, classifier and caption was in the feature cache",
                     self.card.name)
        report.table = self._write_aggregates(model_fp, report)
        if report.failed or report.flagged:
            parts = [f"failed: {', '.join(report.failed)}"] if report.failed else []
            parts += [f"flagged: {', '.join(report.flagged)}"] if report.flagged else []
            message = f"{'; '.join(parts)} (reasons above and in run.json; other results in {self.model_dir})"
            if report.bad_input:  # missing data, bad YAML arguments: the documented exit code for bad input
                raise UserInputError(message)
            raise TasksFailedError(message)
        return report

    def _full_result_here(self, task: Task, path: Path, model_fp: str) -> bool:
        """Under --limit: ``path`` holds this model's result of the task on the whole dataset, under the same
        configuration but the limit (a seeded subset would only displace it)."""
        cfg = self.config
        if cfg.limit is None:
            return False
        full = task.fingerprint(None, cfg.transform, cfg.decoder)
        return is_done(path, model_fp, full) and self._same_expected_counts(task, path)

    def _same_expected_counts(self, task: Task, path: Path) -> bool:
        """Whether the result was checked against the counts the task file states now. They are left out of the
        fingerprint (the numbers do not depend on them), but its count_status does: a result checked against
        other counts is evaluated again (from cached features where it can), not resumed with a stale status."""
        row = primary_row(read_task_csv(path))
        same = (row["expected_num_samples"] == task.spec.expected_num_samples
                and row["expected_num_texts"] == task.spec.expected_num_texts)
        if not same:
            log.info("%s: the task file's expected counts changed since %s; evaluated again", task.name, path)
        return same

    def _reflag_skipped(self, task: Task, path: Path, report: RunReport) -> None:
        """A finished task whose numbers need a look stays flagged (exit 3) on every re-run, not only the first."""
        row = primary_row(read_task_csv(path))
        reasons = []
        if row["num_failed"]:
            reasons.append(f"{row['num_failed']} samples unreadable "
                           f"(list: {self.model_dir / f'{task.name}.errors.txt'})")
        if row["count_status"] in COUNT_MISMATCHES:
            reasons.append(f"count_status={row['count_status']}: {count_message(row)}")
        if reasons:
            report.flagged[task.name] = "; ".join(reasons) + " (from the earlier run)"
            log.warning("%s: %s", task.name, report.flagged[task.name])

    def _run_task(self, task: Task, evaluations: list, ctx: RunContext, model_fp: str, report: RunReport) -> None:
        ident = TaskIdentity(self.card.name, model_fp, self.card.adapter, self.weights_used, task.name,
                             task.spec.version, self.task_fingerprints[task.name])
        csv_path = self.model_dir / f"{task.name}.csv"
        # another configuration's result is moved aside before this one is attempted: if the attempt fails, the
        # folder must not go on showing (and suites averaging) a number of the configuration that was replaced
        if csv_path.is_file() and not is_done(csv_path, model_fp, ident.task_fingerprint):
            moved = in_step(lambda: move_to_history(self.model_dir, task.name) if is_writer() else None)
            if moved is not None:  # kept, never overwritten
                report.history[task.name] = str(moved)
                log.info("%s: the earlier result (other fingerprint) moved to %s", task.name, moved)
        result = self._attempt(task, report, lambda: self._evaluate(task, evaluations, ctx))
        if result is None:
            return
        # rank 0 writes; a write that fails there stops every rank alike (distributed.in_step)
        in_step(lambda: self._write_result(task, ident, result) if is_writer() else None)
        self._record_problems(task, result, report)
        primary = result.metrics.get(task.spec.primary_metric, float("nan"))
        speed = (f"{result.images_per_second:.0f} img/s" if result.images_per_second == result.images_per_second
                 else "images from the feature cache")  # NaN: nothing was encoded
        log.info("%s: %s = %.2f%% on %d samples (%d failed) in %.1fs, %s%s", task.name,
                 task.spec.primary_metric, 100 * primary, result.num_samples, result.num_failed,
                 result.seconds, speed, " [partial]" if result.partial else "")
        report.done.append(task.name)
        if result.alternatives:
            report.transforms[task.name] = {"chosen": result.transform, **result.alternatives}

    def _resize_modes(self, task: Task) -> list[Optional[str]]:
        """The resize modes a task is evaluated with (None: the context's own)."""
        if self.config.transform != "best-of-both" or task.fixed_resize is not None:
            return [None]
        return ["shortest", "squash"]

    def _evaluate(self, task: Task, evaluations: list, ctx: RunContext):
        """One evaluation, or with --transform best-of-both one per resize, keeping the better primary metric
        per task (the EVA-CLIP-18B paper's Table 2 protocol) and recording which won."""
        # what a reference number must have been made under to be comparable with this one
        facts = {"decoder": self.config.decoder, "precision": self.precision, **task.protocol_facts()}
        results = {mode: task.evaluate(self.encoder, replace(ctx, resize_mode=mode) if mode else ctx, inputs)
                   for mode, inputs in evaluations}
        if list(results) == [None]:
            result = results[None]
            result.protocol = {"transform": result.transform, **facts}
            return result
        primary = task.spec.primary_metric
        best = max(results, key=lambda mode: results[mode].metrics[primary])  # a tie keeps shortest (EVA's own)
        chosen = results[best]
        chosen.alternatives = {mode: r.metrics[primary] for mode, r in results.items()}
        log.info("%s: best of both transforms: %s (%s)", task.name, best,
                 ", ".join(f"{m} {100 * v:.2f}%" for m, v in chosen.alternatives.items()))
        chosen.protocol = {"transform": "best-of-both", **facts}
        return chosen

    def _attempt(self, task: Task, report: RunReport, step):
        """Run one step of a task; a typed error fails that task only (unless --fail-fast). A model that cannot
        load (``ModelLoadFailed``, not an EvalsuiteError) goes through: it stops the run."""
        try:
            return step() or True
        except EvalsuiteError as exc:
            if self.config.fail_fast:
                raise
            log.error("%s: failed: %s", task.name, exc)
            report.failed[task.name] = str(exc)
            if isinstance(exc, UserInputError):
                report.bad_input.append(task.name)
            return None

    def _write_result(self, task: Task, ident: TaskIdentity, result) -> None:
        """The task's files: predictions first (a CSV never points at predictions of another run), the error list
        (or none: an earlier evaluation's is not this one's), then the CSV."""
        if result.predictions_csv is not None:
            atomic_write_text(self.model_dir / f"{task.name}.predictions.csv", result.predictions_csv)
        err_path = self.model_dir / f"{task.name}.errors.txt"
        if result.failures:
            atomic_write_text(err_path, "\n".join(result.failures) + "\n")
        else:
            err_path.unlink(missing_ok=True)
        write_task_csv(self.model_dir / f"{task.name}.csv", task_rows(ident, result, task.spec.primary_metric))

    def _record_problems(self, task: Task, result, report: RunReport) -> None:
        for warning in result.warnings:
            log.warning("%s: %s", task.name, warning)
        if result.failures:
            err_path = self.model_dir / f"{task.name}.errors.txt"
            for message in result.failures[:20]:
                log.error("%s: unreadable sample: %s", task.name, message)
            report.flagged[task.name] = (
                f"{result.num_failed} of {result.num_failed + result.num_samples} samples unreadable,"
                f" metrics cover the rest (list: {err_path})"
            )
        if result.count_status in COUNT_MISMATCHES:
            why = (f"count_status={result.count_status}: scored {result.num_samples} samples, the task expects"
                   f" {result.expected_num_samples}")
            if result.expected_num_texts is not None:
                why += f" ({result.num_texts} of {result.expected_num_texts} expected captions)"
            report.flagged[task.name] = "; ".join(filter(None, [report.flagged.get(task.name), why]))

    def _write_aggregates(self, model_fp: str, report: RunReport) -> str:
        names = [t.name for t in self.tasks]
        summary = write_summary(self.model_dir, names, model_fp, self.task_fingerprints)
        covered = [r["task"] for r in summary]
        suites = {s: self.catalog.suite_members(s) for s in self.catalog.suites_covering(covered)}
        suite_rows = write_suites(self.model_dir, suites, summary, self._member_rows(suites, covered),
                                  self.catalog.task_types())
        write_run_manifest(self.model_dir, {
            "config": asdict(self.config),
            "model_card": self.card.as_dict(),
            "model_fingerprint": model_fp,
            "adapter": self.card.adapter,
            "weights": self.weights_used,
            "load_notes": getattr(self._model, "load_notes", []),
            "device": str(self.device),
            "device_details": device_details(self.device),
            "precision": self.precision,
            "preprocess": self._preprocess_description(),
            "model_loaded": self._model is not None,
            "tasks": {t.name: {"version": t.spec.version, "fingerprint": self.task_fingerprints.get(t.name),
                               "prompt_digest": getattr(getattr(t, "bank", None), "digest", None),
                               "data_root": t.data_root, "data_identity": t.data_identity,
                               "data_source": t.source_used}
                      for t in self.tasks},
            "verify_data": self.config.verify_data,
            "best_of_both": self._best_of_both(report),
            "history": report.history,  # earlier results (other fingerprints) moved aside by this run
            # the image batch actually encoded at once (lower than --batch-size after a CUDA out-of-memory)
            "image_batch_limit": self.encoder.image_batch_limit if self.encoder else self.config.batch_size,
            "done": report.done, "skipped": report.skipped, "failed": report.failed, "flagged": report.flagged,
            "versions": _versions(),
        })
        return format_table(summary, suite_rows)


    def _best_of_both(self, report: RunReport) -> dict:
        """Each best-of-both task's winner and both values: this run's, and the earlier run.json's for the tasks
        whose result this run kept (skipped as done), so a resumed run does not erase the losing value, which
        is written nowhere else."""
        kept = {}
        try:
            earlier = json.loads((self.model_dir / "run.json").read_text(encoding="utf-8")).get("best_of_both")
        except (OSError, ValueError, AttributeError):
            earlier = None
        if isinstance(earlier, dict):
            kept = {t: v for t, v in earlier.items() if t in report.skipped}
        return {**kept, **report.transforms}

    def _member_rows(self, suites: dict[str, list[str]], covered: list[str]) -> dict[str, dict[str, Optional[dict]]]:
        """Per suite with ``member_metrics``, the summary-style row of each such member's metric (None: the task
        did not compute it, so the suite is left out rather than averaged over the primary metric)."""
        out = {}
        for suite in suites:
            chosen = self.catalog.suites[suite].member_metrics
            rows = {}
            for task, metric in chosen.items():
                found = None
                if task in covered:
                    found = next((r for r in read_task_csv(self.model_dir / f"{task}.csv") if r["metric"] == metric),
                                 None)
                rows[task] = summary_row(found) if found is not None else None
            if rows:
                out[suite] = rows
        return out


# adapters whose library is an optional extra: (import name, extra); checked before any data or weights are read
ADAPTER_EXTRAS = {"hf": ("transformers", "hf")}


def require_optional(requirement: Optional[tuple[str, str]]) -> None:
    import importlib.util

    if requirement is not None and importlib.util.find_spec(requirement[0]) is None:
        module, extra = requirement
        raise UserInputError(f"this needs the {module} package, which is not installed: pip install"
                             f" 'evalsuite[{extra}]'")


@contextlib.contextmanager
def run_log(path: Optional[Path], invocation: str):
    """Append the run's log lines (with timestamps) to ``<results>/<model>/run.log`` while it runs."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    with _info_records(log):
        log.addHandler(handler)
        log.info("=== evalsuite %s run: %s", __version__, invocation)
        try:
            yield
        finally:
            log.removeHandler(handler)
            handler.close()


class _PassOn(logging.Handler):
    """Hands a record at or above its level to where the logger sent records before (its handlers, its parents)."""

    def __init__(self, handlers: list[logging.Handler], parent: Optional[logging.Logger], level: int) -> None:
        super().__init__(level)
        self.handlers, self.parent = handlers, parent

    def emit(self, record: logging.LogRecord) -> None:
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
        if self.parent is not None:
            self.parent.handle(record)


@contextlib.contextmanager
def _info_records(logger: logging.Logger):
    """run.log holds the INFO lines even where the caller's logging shows only warnings (the Python API leaves
    logging as the caller set it): the logger makes INFO records meanwhile, and everything it sent on before gets
    only the levels it got before."""
    threshold = logger.getEffectiveLevel()
    if threshold <= logging.INFO:
        yield
        return
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    for handler in handlers:
        logger.removeHandler(handler)
    logger.addHandler(_PassOn(handlers, logger.parent if propagate else None, threshold))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _versions() -> dict:
    import importlib.metadata as md

    out = {"evalsuite": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "open_clip_torch", "timm", "numpy", "pillow", "av", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def device_details(device) -> dict:
    """What else on the device shapes the numbers: the GPU, CUDA and cuDNN versions, and the fp32 math PyTorch is
    set to. fp32 runs with PyTorch's defaults, as CLIP_benchmark does: on Ampere and newer GPUs cuDNN convolutions
    (the patch embedding) run in TF32, matmuls in IEEE fp32 unless the process asked for TF32."""
    import torch

    if device.type != "cuda":
        return {}
    return {"gpu": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "fp32_math": _fp32_math()}


def _fp32_math() -> dict:
    """cuDNN convolution and CUDA matmul fp32 precision: ``tf32`` or ``ieee`` (PyTorch's newer per-backend flags,
    else the older ``allow_tf32`` ones)."""
    import torch

    backends = torch.backends
    conv = getattr(getattr(backends.cudnn, "conv", None), "fp32_precision", None)
    matmul = getattr(backends.cuda.matmul, "fp32_precision", None)
    if conv is None or matmul is None:  # torch before 2.9
        conv = "tf32" if backends.cudnn.allow_tf32 else "ieee"
        matmul = "tf32" if backends.cuda.matmul.allow_tf32 else "ieee"
    if matmul == "none":  # follows torch.set_float32_matmul_precision
        matmul = "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    return {"cudnn_conv": conv, "cuda_matmul": matmul}


def asdict_or_none(obj) -> Optional[dict]:
    return asdict(obj) if obj is not None else None
