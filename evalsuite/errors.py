"""Typed errors. The CLI maps each to an exit code; nothing below the CLI calls sys.exit."""

from __future__ import annotations


class EvalsuiteError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UserInputError(EvalsuiteError):
    """Bad input from the user: a flag, a name, a YAML file, a data folder, a checkpoint."""

    exit_code = 2


class ConfigError(UserInputError):
    """A YAML file (task, suite, prompts, model card) that does not follow its schema."""


class UnknownNameError(UserInputError):
    """A task, suite, model, source kind or metric name that is not registered."""


class PromptError(ConfigError):
    """Class names or templates that are missing, malformed or inconsistent with the task."""


class DatasetUnavailableError(UserInputError):
    """The data for a task cannot be found or read; the message says how to get it."""


class DataNotFoundError(DatasetUnavailableError):
    """No copy of a task's data where a source looks (as opposed to a copy it found and cannot use)."""


class DamagedDataError(DatasetUnavailableError):
    """A copy of a task's data that is there but cut short or incomplete (a truncated shard, missing shards)."""


class ModelLoadError(UserInputError):
    """A model card, weights file or checkpoint that cannot be loaded as asked."""


class NonFiniteFeaturesError(EvalsuiteError):
    """A tower produced NaN or infinite features (broken weights, fp16 overflow): the task cannot be scored."""

    exit_code = 3


class TasksFailedError(EvalsuiteError):
    """Some tasks failed or were flagged; the others were still written."""

    exit_code = 3


class RegressionError(EvalsuiteError):
    """A result lies outside the tolerance of its reference number."""

    exit_code = 4
