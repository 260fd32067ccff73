"""Video classification from one frame per clip (the EVA-CLIP protocol for UCF-101 and Kinetics).

The frame is chosen by the video source (its ``frame_rule``), so the task itself is zero-shot classification of
those frames; this type adds the Kinetics metric ``mean_acc1_acc5`` and insists on a video source.
"""

from __future__ import annotations

from ..errors import ConfigError
from .classification import CLASSIFICATION_METRICS, ClassificationTask

VIDEO_SOURCE_KINDS = ("video_folder", "synthetic_clips")


class VideoMiddleFrameTask(ClassificationTask):
    metric_set = CLASSIFICATION_METRICS + ("mean_acc1_acc5",)
    default_metrics = ("acc1", "acc5", "mean_acc1_acc5")

    def __init__(self, spec, include_paths=()) -> None:
        super().__init__(spec, include_paths)
        wrong = [s.kind for s in spec.sources if s.kind not in VIDEO_SOURCE_KINDS]
        if wrong:
            raise ConfigError(f"{spec.file}: task type video_middle_frame needs a video source"
                              f" ({', '.join(VIDEO_SOURCE_KINDS)}), got {wrong}")

    def _frame_rule(self) -> str:
        source = next((s for s in self.sources if s.kind == self.source_used), self.sources[0])
        return source.args.frame_rule

    def reader_identity(self) -> dict:
        from ..data.video import READER_VERSION, frame_format, pyav_version

        rule = self._frame_rule()  # the rule's meaning is versioned: vissl became vissl's own procedure in v2
        return {"frames": {"rule": rule, "format": frame_format(rule), "reader": READER_VERSION,
                           "pyav": pyav_version()}}

    def fingerprint_payload(self) -> dict:
        return dict(super().fingerprint_payload(), **self.reader_identity())

    def protocol_facts(self) -> dict[str, str]:
        from ..data.video import frame_format

        rule = self._frame_rule()
        return {**super().protocol_facts(), "frame_rule": rule, "frame_format": frame_format(rule)}
