"""Task types (code); the datasets themselves are YAML files in tasks/."""

from ..registry import Registry

TASK_TYPES: Registry = Registry("task type")
TASK_TYPES.register_lazy("classification", "evalsuite.tasks.classification:ClassificationTask")
TASK_TYPES.register_lazy("video_middle_frame", "evalsuite.tasks.video:VideoMiddleFrameTask")
TASK_TYPES.register_lazy("zeroshot_retrieval", "evalsuite.tasks.retrieval:ZeroShotRetrievalTask")


def build_task(spec, include_paths=()):
    """The task object for a spec: checks its type, prompts and source arguments (no torch, no data access)."""
    return TASK_TYPES.get(spec.type)(spec, include_paths)
