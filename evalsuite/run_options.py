"""``evalsuite run``'s options from three places, in this order of precedence: the flags given on the command line,
a ``--config`` file (YAML/JSON under the flags' names, or a results ``run.json`` to replay), the defaults. Also
several models per command (``--model`` repeated, ``--models-file``) and CLIP_benchmark's ``--model ARCH
--pretrained TAG``. Values from a file go through the same checks as the flags (ranges, choices)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .config import RunConfig
from .errors import ConfigError, UserInputError
from .registry import did_you_mean
from .yamlio import load_yaml

# run.json and config-file keys that are RunConfig fields under another name than the flag's dest
FIELD_OF_DEST = {"include_path": "include_paths"}
DEST_OF_FIELD = {v: k for k, v in FIELD_OF_DEST.items()}
EXTRA_KEYS = ("models", "models_file", "pretrained")  # accepted in a config file besides RunConfig's fields
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def _run_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    run = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    return {a.dest: a for a in run._actions if a.option_strings and a.dest != "help"}


def explicit_dests(argv: list[str], actions: dict[str, argparse.Action]) -> set[str]:
    """The options the user typed (so a config file never overrides them)."""
    given = set()
    for dest, action in actions.items():
        for option in action.option_strings:
            if any(arg == option or arg.startswith(option + "=") for arg in argv):
                given.add(dest)
    return given


def read_config_file(path: Path) -> dict:
    """A mapping of run options; a results run.json contributes its recorded ``config``."""
    if not path.is_file():
        raise UserInputError(f"--config {path}: no such file")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config {path}: not valid JSON ({exc})") from None
    else:
        data = load_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("config"), dict) and "model_fingerprint" in data:
        data = data["config"]  # a run.json: replay what that run was asked to do
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of run options, got {type(data).__name__}")
    return data


def _from_file(data: dict, path: Path, actions: dict[str, argparse.Action]) -> dict:
    """File values as the parser would have made them: keys by the flags' names (dashes or underscores), each
    value of the kind its flag takes (a switch true or false, one value or, where the flag repeats, a list)."""
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    fields = set(defaults) | set(EXTRA_KEYS)
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = FIELD_OF_DEST.get(name, name)
        if name not in fields:
            raise ConfigError(f"--config {path}: unknown option {key!r}.{did_you_mean(name, sorted(fields))}")
        action = actions.get(DEST_OF_FIELD.get(name, name))
        try:
            out[name] = _coerce(value, action, nullable=defaults.get(name, dataclasses.MISSING) is None)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ConfigError(f"--config {path}: option {key!r}: {exc}") from None
    return out


def _coerce(value, action: argparse.Action | None, nullable: bool = False):
    """One file value checked and converted by its flag's own rules. ``action`` None: ``models`` (a name or a
    list of names). ``nullable``: null is the option's default (a replayed run.json records it so)."""
    if value is None:
        if nullable or (action is not None and action.default is None):
            return None
        raise ValueError("null is no value here (leave the key out for the default)")
    if action is not None and action.nargs == 0:  # a switch: --resume / --no-resume, --cache-pixels, ...
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return value
    repeats = action is None or isinstance(action, argparse._AppendAction)
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, (dict, list)) or (isinstance(item, bool) and action is not None and action.type is None):
            raise ValueError(f"{item!r} is not a {'name or path' if action is None or action.type is None else 'value'}"
                             " (text or a number)")
        if (action is None or action.type is None) and not isinstance(item, str):
            raise ValueError(f"{item!r} is not text (quote it)")
    converted = [action.type(str(item)) if action is not None and action.type else item for item in items]
    many = repeats or all(isinstance(c, list) for c in converted)  # --tasks takes a comma list
    if isinstance(value, list) and not many:
        raise ValueError(f"{value!r}: one value, not a list")
    flat = [v for c in converted for v in _listify(c)] if many else converted
    if action is not None and action.choices:
        wrong = [v for v in flat if v not in action.choices]
        if wrong:
            raise ValueError(f"{wrong[0]!r} is not one of {', '.join(map(str, action.choices))}")
    return flat if many else flat[0]


def _listify(value) -> list:
    return value if isinstance(value, list) else [value]


def models_of(values: dict, models_file) -> list[str]:
    models = list(values.get("models") or [])
    model = values.get("model")
    models += model if isinstance(model, list) else ([model] if model else [])
    if models_file:
        path = Path(models_file)
        if not path.is_file():
            raise UserInputError(f"--models-file {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserInputError(f"--models-file {path}: not UTF-8 text (byte {exc.start}); one model per"
                                 " line") from None
        models += [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
    return list(dict.fromkeys(models))


def with_pretrained(model: str, pretrained, weights):
    """CLIP_benchmark's ``--model ARCH --pretrained TAG``: a tag of open_clip; a file path is --weights."""
    if not pretrained:
        return model, weights
    if Path(pretrained).expanduser().exists() or str(pretrained).endswith(CHECKPOINT_SUFFIXES):
        if weights:
            raise UserInputError("--pretrained FILE and --weights FILE name the same thing; give one")
        return model, str(pretrained)
    if ":" in model:
        raise UserInputError(f"--pretrained {pretrained!r} is an open_clip tag; it goes with --model ARCH (e.g."
                             f" ViT-B-32), not with --model {model!r}")
    return f"open_clip:{model}/{pretrained}", weights


def run_configs(args: argparse.Namespace, parser: argparse.ArgumentParser, default_data_root: Path) -> list[RunConfig]:
    """One RunConfig per model, from the flags, the --config file and the defaults."""
    actions = _run_actions(parser)
    given = explicit_dests(args.argv, actions)
    values = {FIELD_OF_DEST.get(dest, dest): getattr(args, dest) for dest in actions if hasattr(args, dest)}
    if args.config is not None:
        from_file = _from_file(read_config_file(args.config), args.config, actions)
        for name, value in from_file.items():
            if DEST_OF_FIELD.get(name, name) not in given:
                values[name] = value
    models = models_of(values, values.get("models_file"))
    if not models:
        raise UserInputError("evalsuite run needs --model (or --models-file, or model: in --config)")
    if not values.get("tasks"):
        raise UserInputError("evalsuite run needs --tasks (or tasks: in --config)")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    base = {k: v for k, v in values.items() if k in fields and k != "model"}
    base["data_root"] = Path(base.get("data_root") or default_data_root)
    base["output_dir"] = Path(base.get("output_dir") or "results")
    base["include_paths"] = [Path(p) for p in base.get("include_paths") or []]
    configs = []
    for model in models:
        name, weights = with_pretrained(model, values.get("pretrained"), base.get("weights"))
        configs.append(RunConfig(model=name, **{**base, "weights": weights}))
    return configs
