"""Find the project's data folders: tasks/, prompts/ and model cards.

Order: ``--include-path`` folders first (user additions), then the source checkout (editable install or
running from the repo), else the copies packaged inside the wheel (``evalsuite/_data``).
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserInputError

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_ROOT = PACKAGE_DIR.parent
_PACKAGED_ROOT = PACKAGE_DIR / "_data"


def builtin_root() -> Path:
    """The folder holding the built-in ``tasks/`` and ``prompts/``."""
    if (_CHECKOUT_ROOT / "tasks").is_dir() and (_CHECKOUT_ROOT / "prompts").is_dir():
        return _CHECKOUT_ROOT
    if (_PACKAGED_ROOT / "tasks").is_dir():
        return _PACKAGED_ROOT
    raise UserInputError(
        f"evalsuite's tasks/ and prompts/ were found neither in {_CHECKOUT_ROOT} nor in {_PACKAGED_ROOT};"
        " reinstall the package (pip install evalsuite) or run from a checkout"
    )


def check_include_path(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise UserInputError(f"--include-path {path}: not a folder")
    if not any((path / sub).is_dir() for sub in ("tasks", "prompts", "cards")):
        raise UserInputError(
            f"--include-path {path}: holds none of tasks/, prompts/, cards/; put task YAMLs in {path}/tasks,"
            f" prompt files in {path}/prompts/{{classnames,templates}} and model cards in {path}/cards"
        )
    return path


def search_roots(include_paths: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """The include paths, then the built-in root; a folder given twice (or the checkout itself) counts once, in
    its last place, so its files are not 'defined twice' and the built-in ones stay built-in."""
    return _once([check_include_path(p) for p in include_paths] + [builtin_root()])


def _once(folders: list[Path]) -> list[Path]:
    last = {folder.resolve(): i for i, folder in enumerate(folders)}
    return [folder for i, folder in enumerate(folders) if last[folder.resolve()] == i]


def task_dirs(include_paths=()) -> list[Path]:
    return [r / "tasks" for r in search_roots(include_paths) if (r / "tasks").is_dir()]


def prompt_dirs(include_paths=()) -> list[Path]:
    return [r / "prompts" for r in search_roots(include_paths) if (r / "prompts").is_dir()]


def card_dirs(include_paths=()) -> list[Path]:
    user = [check_include_path(p) / "cards" for p in include_paths]
    return _once([d for d in user if d.is_dir()] + [PACKAGE_DIR / "models" / "cards"])


def default_cache_dir() -> Path:
    """Caches (video frames, demo clips, image features): $EVALSUITE_CACHE_DIR, else ~/.cache/evalsuite."""
    import os

    return Path(os.environ.get("EVALSUITE_CACHE_DIR", Path.home() / ".cache" / "evalsuite"))
