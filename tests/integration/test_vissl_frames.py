"""frame_rule vissl is vissl's middle-frame extraction byte for byte: the frame its scripts pick (container header
count, sequential decode stopped at ``i - 1 == nb_frames // 2``) and the JPEG file they save, compared with an
independent re-implementation of vissl's function on the shared real clips and on generated clips whose header
and decoded counts disagree (edit list, truncation, MKV/WebM without a count, XVID AVI)."""

import subprocess
from pathlib import Path

import pytest

from evalsuite.data import video
from evalsuite.data.synthetic_clips import write_clip
from evalsuite.data.video import CachedFrameLoader, VideoDecodeError, read_frame_bytes
from helpers import SHARED_DATA

av = pytest.importorskip("av")


def vissl_middle_frame(path):
    """vissl's ``_extract_middle_frame`` (create_k700_data_files.py), re-implemented as the oracle."""
    with av.open(str(path)) as container:
        if len(container.streams.video) > 0:
            nb_frames = container.streams.video[0].frames
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if i - 1 == nb_frames // 2:
                    return frame.to_image()
        return None


def vissl_jpeg_file(path, scratch: Path):
    """The bytes vissl writes: ``mid_frame.save(image_file)`` into ``<clip stem>.jpg`` opened for writing; None
    where vissl records an error (no frame, or the decoder raised)."""
    try:
        frame = vissl_middle_frame(path)
    except av.error.FFmpegError:
        return None
    if frame is None:
        return None
    target = scratch / (Path(path).stem + ".jpg")
    with open(target, "w") as image_file:
        frame.save(image_file)
    return target.read_bytes()


def ffmpeg(*args):
    exe = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    subprocess.run([exe, "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


SOURCE = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2"]


@pytest.fixture(scope="module")
def generated_clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    from test_video import numbered_frames, write_mpeg4_avi

    clips = {}
    write_clip(root / "pyav.mp4", numbered_frames(31))
    clips["pyav.mp4"] = root / "pyav.mp4"
    ffmpeg(*SOURCE, "-c:v", "libx264", "-pix_fmt", "yuv420p", root / "base.mp4")
    ffmpeg("-ss", "0.52", "-i", root / "base.mp4", "-c", "copy", root / "editlist.mp4")  # header 50, 37 decode
    ffmpeg(*SOURCE, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", root / "fast.mp4")
    data = (root / "fast.mp4").read_bytes()
    for share in (3, 6, 9):  # header 50; the cut leaves fewer frames (or a decoder error) behind
        (root / f"truncated{share}.mp4").write_bytes(data[:len(data) * share // 10])
    ffmpeg(*SOURCE, "-c:v", "libx264", "-pix_fmt", "yuv420p", root / "clip.mkv")  # no header count
    ffmpeg(*SOURCE, "-c:v", "libvpx", root / "clip.webm")
    ffmpeg(*SOURCE, "-c:v", "mpeg4", "-vtag", "XVID", "-bf", "2", root / "xvid.avi")
    write_mpeg4_avi(root / "bframes.avi", numbered_frames(20))
    ffmpeg(*SOURCE[:3], "testsrc=size=64x48:rate=25:duration=0.04", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           root / "oneframe.mkv")  # header 0 -> vissl wants frame 1 -> error
    for name in ("base.mp4", "editlist.mp4", "fast.mp4", "truncated3.mp4", "truncated6.mp4", "truncated9.mp4",
                 "clip.mkv", "clip.webm", "xvid.avi", "bframes.avi", "oneframe.mkv"):
        clips[name] = root / name
    return clips


def real_clips() -> list[Path]:
    root = SHARED_DATA / "videos"
    return sorted(p for p in root.rglob("*") if p.suffix in (".mp4", ".avi")) if root.is_dir() else []


def check_equivalent(path: Path, scratch: Path) -> str:
    expected = vissl_jpeg_file(path, scratch)
    if expected is None:
        with pytest.raises(VideoDecodeError):
            read_frame_bytes(path, "vissl")
        return "error"
    data, suffix = read_frame_bytes(path, "vissl")
    assert suffix == "jpg" and data == expected, path.name
    return "frame"


def test_generated_clips_equal_vissl_byte_for_byte(generated_clips, tmp_path):
    outcomes = {name: check_equivalent(path, tmp_path) for name, path in generated_clips.items()}
    assert outcomes["oneframe.mkv"] == "error" and outcomes["truncated3.mp4"] == "error"
    assert outcomes["clip.mkv"] == outcomes["editlist.mp4"] == outcomes["xvid.avi"] == "frame"


def test_real_clips_equal_vissl_byte_for_byte(tmp_path):
    clips = real_clips()
    if not clips:
        pytest.skip("../shared/data/videos not present")
    assert len(clips) == 6
    for path in clips:
        assert check_equivalent(path, tmp_path) == "frame"


def test_header_count_rules_differ_from_decoded_counts(generated_clips):
    """Where the header and the decoder disagree the two rules pick different frames: the rule matters."""
    for name in ("clip.mkv", "editlist.mp4"):
        vissl_png = video.read_middle_frame(generated_clips[name], "vissl")
        decoded = video.read_middle_frame(generated_clips[name], "decoded_middle")
        diff = sum(abs(a - b) for a, b in zip(vissl_png.tobytes(), decoded.tobytes())) / len(decoded.tobytes())
        assert diff > 5, name  # another frame, not JPEG noise


def test_vissl_decodes_half_a_clip_once(generated_clips, monkeypatch):
    """One sequential pass that stops at the target frame: about half the frames, never a counting pass."""
    decoded = []
    real_open = av.open

    class Counting:
        """av.open's container with ``decode`` counting the frames it yields."""

        def __init__(self, *a, **k):
            self.container = real_open(*a, **k)

        def __enter__(self):
            self.container.__enter__()
            return self

        def __exit__(self, *exc):
            return self.container.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.container, name)

        def decode(self, *args, **kwargs):
            for frame in self.container.decode(*args, **kwargs):
                decoded.append(1)
                yield frame

    monkeypatch.setattr(av, "open", Counting)
    read_frame_bytes(generated_clips["base.mp4"], "vissl")
    assert len(decoded) == 50 // 2 + 2
    decoded.clear()
    read_frame_bytes(generated_clips["base.mp4"], "decoded_middle")
    assert len(decoded) == 50 + 50 // 2 + 2  # the earlier rule: a counting pass, then a second pass


def test_frame_cache_holds_vissl_jpeg_and_survives_damage(generated_clips, tmp_path, caplog):
    loader = CachedFrameLoader("vissl", tmp_path / "cache")
    clip = generated_clips["base.mp4"]
    first = loader(str(clip))
    (entry,) = (tmp_path / "cache").rglob("*.jpg")
    assert entry.read_bytes() == vissl_jpeg_file(clip, tmp_path)
    entry.write_bytes(entry.read_bytes()[:100])  # truncated entry: recomputed, never a failed clip
    assert loader(str(clip)).tobytes() == first.tobytes()
    assert "unreadable" in caplog.text
    lossless = CachedFrameLoader("decoded_middle", tmp_path / "cache")
    lossless(str(clip))
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 1
