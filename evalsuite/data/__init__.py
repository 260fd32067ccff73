"""Data sources (registered kinds taking only YAML arguments) and loader construction."""

from ..registry import Registry

SOURCES: Registry = Registry("data source kind")
SOURCES.register_lazy("image_folder", "evalsuite.data.image_folder:ImageFolderSource")
SOURCES.register_lazy("file_list", "evalsuite.data.file_list:FileListSource")
SOURCES.register_lazy("synthetic_shapes", "evalsuite.data.synthetic:SyntheticShapesSource")
SOURCES.register_lazy("clip_benchmark", "evalsuite.data.clip_benchmark:ClipBenchmarkSource")
SOURCES.register_lazy("webdataset", "evalsuite.data.webdataset:WebdatasetSource")
SOURCES.register_lazy("webdataset_captions", "evalsuite.data.webdataset:WebdatasetCaptionsSource")
# the earlier name (it unpacked the shards once); same arguments, now read in place
SOURCES.register_lazy("hf_webdataset", "evalsuite.data.webdataset:WebdatasetSource")
SOURCES.register_lazy("video_folder", "evalsuite.data.video:VideoFolderSource")
SOURCES.register_lazy("synthetic_clips", "evalsuite.data.synthetic_clips:SyntheticClipsSource")
SOURCES.register_lazy("coco_captions", "evalsuite.data.captions:CocoCaptionsSource")
SOURCES.register_lazy("karpathy_json", "evalsuite.data.captions:KarpathySource")
SOURCES.register_lazy("clip_benchmark_captions", "evalsuite.data.captions:ClipBenchmarkCaptionsSource")
SOURCES.register_lazy("hf_captions", "evalsuite.data.captions:HFCaptionsSource")
SOURCES.register_lazy("synthetic_captions", "evalsuite.data.synthetic:SyntheticCaptionsSource")
