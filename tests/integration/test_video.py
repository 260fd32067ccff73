"""Video: the frame rule, exact frames (generated clips and the real clips, compared with the ffmpeg binary),
bad files recorded as failures, the frame cache, and the CLI end to end."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from evalsuite.cli import main
from evalsuite.data import video
from evalsuite.data.synthetic_clips import write_clip
from evalsuite.data.video import VideoDecodeError, frame_index, read_middle_frame
from helpers import FEWER_THAN_EXPECTED, shared


def numbered_frames(n: int, size=(64, 48)) -> list[Image.Image]:
    """Frame i: a distinct grey level plus its number drawn in, so any frame identifies itself."""
    frames = []
    for i in range(n):
        img = Image.new("RGB", size, (i * 7 % 256, 255 - i * 5 % 256, (i * 13) % 256))
        ImageDraw.Draw(img).text((4, 4), str(i), fill=(255, 255, 255))
        frames.append(img)
    return frames


def closest_frame(image: Image.Image, frames: list[Image.Image]) -> int:
    a = np.asarray(image, dtype=np.int32)
    return int(np.argmin([np.abs(a - np.asarray(f, dtype=np.int32)).mean() for f in frames]))


def write_mpeg4_avi(path: Path, frames: list[Image.Image]) -> None:
    """MPEG-4 part 2 in AVI with B-frames, the kind of file where seeking decoders go wrong."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.max_b_frames = 2
        stream.options = {"qscale": "2"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("n,vissl,center", [(3, 2, 1), (9, 5, 4), (10, 6, 5), (141, 71, 70), (280, 141, 140)])
def test_frame_index_rules(n, vissl, center):
    assert frame_index(n, "vissl") == vissl and frame_index(n, "center") == center and frame_index(n, "first") == 0


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_short_for_vissl_is_an_error(n):
    with pytest.raises(VideoDecodeError):
        frame_index(n, "vissl")


@pytest.mark.parametrize("n", [9, 30, 31])
@pytest.mark.parametrize("container", ["mp4", "avi"])
def test_generated_clips_give_the_exact_frame(tmp_path, n, container):
    frames = numbered_frames(n)
    path = tmp_path / f"clip.{container}"
    write_clip(path, frames) if container == "mp4" else write_mpeg4_avi(path, frames)
    for rule in ("vissl", "decoded_middle", "center", "first"):
        assert closest_frame(read_middle_frame(path, rule), frames) == frame_index(n, rule), rule


def ffmpeg_exe() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_frame_count(path: Path) -> int:
    """Frames ffmpeg decodes (its own count, independent of our reader)."""
    out = subprocess.run([ffmpeg_exe(), "-v", "info", "-nostats", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    return int(re.findall(r"frame=\s*(\d+)", out)[-1])


def ffmpeg_frame(path: Path, index: int, size: tuple[int, int]) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{index})",
                          "-fps_mode", "passthrough", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3)


def real_clips() -> list[Path]:
    root = shared("videos")
    return sorted(p for p in root.rglob("*") if p.suffix in (".mp4", ".avi"))


def test_real_clips_match_ffmpeg_bit_for_bit():
    """Every clip in ../shared/data/videos, incl. the XVID AVI with packed B-frames (the lossless decoded-count
    rule; vissl's JPEG step is compared with vissl itself in test_vissl_frames.py)."""
    clips = real_clips()
    assert len(clips) == 6
    for path in clips:
        n = ffmpeg_frame_count(path)
        ours = read_middle_frame(path, "decoded_middle")
        expected = ffmpeg_frame(path, n // 2 + 1, ours.size)
        assert np.array_equal(np.asarray(ours), expected), path.name


def test_corrupt_and_empty_files_raise(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    for name in ("empty.mp4", "corrupt.mp4"):
        with pytest.raises(VideoDecodeError):
            read_middle_frame(tmp_path / name)


def kinetics_folder(root: Path) -> Path:
    """<root>/kinetics400/val/: 4 good clips in two classes, one corrupt, one empty."""
    val = root / "kinetics400" / "val"
    for cls, k in (("arm_wrestling", 0), ("arm_wrestling", 1), ("abseiling", 2), ("air drumming", 3)):
        (val / cls).mkdir(parents=True, exist_ok=True)
        write_clip(val / cls / f"clip{k}.mp4", numbered_frames(7 + k))
    (val / "abseiling" / "broken.mp4").write_bytes(b"not a video at all")
    (val / "abseiling" / "empty.mp4").write_bytes(b"")
    return root


def test_cli_kinetics_folder_counts_failures_and_reuses_cached_frames(tiny_model_dir, tmp_path, monkeypatch):
    data = kinetics_folder(tmp_path / "data")
    out = tmp_path / "out"
    calls = []
    real = video.read_frame_bytes
    monkeypatch.setattr(video, "read_frame_bytes", lambda path, rule="vissl": calls.append(path) or real(path, rule))
    argv = ["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "kinetics400", "--data-root", str(data),
            "--output-dir", str(out), "--workers", "0"]
    assert main(argv) == 3  # flagged: two clips could not be read
    model_dir = next(out.iterdir())
    rows = {r["metric"]: r for r in csv.DictReader((model_dir / "kinetics400.csv").open())}
    assert set(rows) == {"acc1", "acc5", "mean_acc1_acc5"}
    assert {r["num_samples"] for r in rows.values()} == {"4"} and {r["num_failed"] for r in rows.values()} == {"2"}
    assert rows["mean_acc1_acc5"]["is_primary"] == "true"
    errors = (model_dir / "kinetics400.errors.txt").read_text()
    assert "broken.mp4" in errors and "empty.mp4" in errors
    assert len(calls) == 6

    calls.clear()
    assert main(argv + ["--no-resume", "--no-cache-features"]) == 3
    assert sorted(Path(c).name for c in calls) == ["broken.mp4", "empty.mp4"]  # good clips: from the frame cache

    calls.clear()
    assert main(argv + ["--no-resume"]) == 3  # with the image-feature cache: no clip is touched at all
    assert calls == []
    rows2 = {r["metric"]: r for r in csv.DictReader((model_dir / "kinetics400.csv").open())}
    assert {r["num_failed"] for r in rows2.values()} == {"2"}
    assert rows2["acc1"]["value"] == rows["acc1"]["value"]


def ucf_layout(root: Path, lists: dict[str, list[str]], class_ind: str = "") -> Path:
    """UCF101.rar and the splits zip unpacked as they come: ucf101/UCF-101/<Class>/ and ucf101/ucfTrainTestlist/."""
    clips = root / "ucf101" / "UCF-101"
    for listed in lists.values():
        for relative in listed:
            (clips / relative).parent.mkdir(parents=True, exist_ok=True)
            if not (clips / relative).exists():
                write_clip(clips / relative, numbered_frames(5))
    lists_dir = root / "ucf101" / "ucfTrainTestlist"
    lists_dir.mkdir(parents=True, exist_ok=True)
    for name, listed in lists.items():
        (lists_dir / name).write_text("".join(f"{r}\n" for r in listed))
    (lists_dir / "classInd.txt").write_text(class_ind)
    return root


def ucf_task(name: str):
    from evalsuite.catalog import Catalog
    from evalsuite.tasks import build_task

    spec = Catalog.load().tasks[name]
    return build_task(spec), spec


UCF_LISTS = {"testlist01.txt": ["Basketball/v_Basketball_g01_c01.mp4", "YoYo/v_YoYo_g01_c01.mp4"],
             "testlist02.txt": ["Basketball/v_Basketball_g08_c01.mp4"],
             "testlist03.txt": ["YoYo/v_YoYo_g15_c02.mp4", "YoYo/v_YoYo_g16_c01.mp4"]}


def test_ucf101_is_the_three_test_lists_and_split1_the_first(tmp_path):
    from evalsuite.data.base import SourceContext

    task, spec = ucf_task("ucf101")
    root = ucf_layout(tmp_path, UCF_LISTS, "".join(f"{i + 1} {k}\n" for i, k in enumerate(task.bank.keys)))
    assert spec.expected_num_samples == 11213 and "ucf101" in __import__("evalsuite.catalog").catalog.Catalog.load(
    ).suite_members("eva_video")
    keys = task.bank.keys
    samples = task.sources[0].samples(SourceContext(root, keys))
    assert len(samples.items) == 5 and samples.items[2].endswith("UCF-101/Basketball/v_Basketball_g08_c01.mp4")
    assert samples.labels == [keys.index("Basketball"), keys.index("YoYo"), keys.index("Basketball"),
                              keys.index("YoYo"), keys.index("YoYo")]
    split1, spec1 = ucf_task("ucf101_split1")
    assert spec1.expected_num_samples == 3783
    assert len(split1.sources[0].samples(SourceContext(root, keys)).items) == 2


def test_ucf101_class_index_must_match_the_classnames_order(tmp_path):
    from evalsuite.data.base import SourceContext

    task, _ = ucf_task("ucf101")
    keys = task.bank.keys
    good = "".join(f"{i + 1} {k}\n" for i, k in enumerate(keys))
    task.sources[0].samples(SourceContext(ucf_layout(tmp_path / "good", UCF_LISTS, good), keys))
    shifted = "".join(f"{i + 2} {k}\n" for i, k in enumerate(keys[:3]))
    with pytest.raises(Exception, match="classInd.txt:1: class 2 is 'ApplyEyeMakeup'"):
        task.sources[0].samples(SourceContext(ucf_layout(tmp_path / "bad", UCF_LISTS, shifted), keys))


def test_ucf101_clip_listed_twice_is_an_error(tmp_path):
    from evalsuite.data.base import SourceContext

    lists = dict(UCF_LISTS, **{"testlist02.txt": ["YoYo/v_YoYo_g01_c01.mp4"]})
    task, _ = ucf_task("ucf101")
    with pytest.raises(Exception, match="listed twice"):
        task.sources[0].samples(SourceContext(ucf_layout(tmp_path, lists, ""), task.bank.keys))


@pytest.mark.parametrize("folder", ["hurling (sport)", "hurling_(sport)", "hurling_sport"])
def test_kinetics_folders_with_or_without_parentheses(tmp_path, folder):
    from evalsuite.catalog import Catalog
    from evalsuite.data.base import SourceContext
    from evalsuite.tasks import build_task

    task = build_task(Catalog.load().tasks["kinetics400"])
    val = tmp_path / "kinetics400" / "val" / folder
    val.mkdir(parents=True)
    write_clip(val / "x.mp4", numbered_frames(5))
    samples = task.sources[0].samples(SourceContext(tmp_path, task.bank.keys))
    assert samples.labels == [task.bank.classnames.index("hurling (sport)")]


def test_real_labelled_clips_run(tiny_model_dir, tmp_path):
    """The shared Kinetics clips in their class folders (arm_wrestling, abseiling) run through the CLI."""
    root = shared("videos")
    out = tmp_path / "out"
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "kinetics400", "--data-root",
                 str(root), "--output-dir", str(out), "--workers", "1"]) == FEWER_THAN_EXPECTED
    rows = list(csv.DictReader((next(out.iterdir()) / "kinetics400.csv").open()))
    assert {r["num_samples"] for r in rows} == {"2"} and {r["num_failed"] for r in rows} == {"0"}


def test_ucf101_lists_the_papers_11213_clips(tmp_path):
    """Full-size generated lists (3,783 + 3,734 + 3,696 lines, the real splits' sizes): the listing alone, no
    decoding; clips that are not on disk are listed and would be counted as unreadable, never dropped."""
    from evalsuite.data.base import SourceContext

    task, _ = ucf_task("ucf101")
    keys = task.bank.keys
    root = tmp_path / "ucf101"
    (root / "ucfTrainTestlist").mkdir(parents=True)
    (root / "UCF-101").mkdir()
    for split, (groups, size) in enumerate([((1, 8), 3783), ((8, 15), 3734), ((15, 22), 3696)], start=1):
        lines = [f"{keys[i % 101]}/v_{keys[i % 101]}_g{groups[0] + (i // 101) % 7:02d}_c{i // 707 + 1:02d}.avi"
                 for i in range(size)]
        (root / "ucfTrainTestlist" / f"testlist0{split}.txt").write_text("\n".join(lines) + "\n")
    samples = task.sources[0].samples(SourceContext(tmp_path, keys))
    assert len(samples.items) == 11213 == task.spec.expected_num_samples
    split1, _ = ucf_task("ucf101_split1")
    assert len(split1.sources[0].samples(SourceContext(tmp_path, keys)).items) == 3783


FORKED_AFTER_A_FRAME = """
import sys
from pathlib import Path
from PIL import Image
from evalsuite.cli import main
from evalsuite.data.synthetic_clips import write_clip
from evalsuite.data.video import read_middle_frame
model, root, out = sys.argv[1:4]
val = Path(root) / "kinetics400" / "val"
for k, cls in enumerate(("arm_wrestling", "abseiling")):
    (val / cls).mkdir(parents=True)
    write_clip(val / cls / "clip.mp4", [Image.new("RGB", (320, 240), (9 * i, 200 - k, 40)) for i in range(9)])
read_middle_frame(val / "abseiling" / "clip.mp4", "decoded_middle")  # PyAV converts a frame in this process
sys.exit(main(["run", "--model", f"local-dir:{model}", "--tasks", "kinetics400", "--data-root", root,
               "--output-dir", out, "--workers", "1", "--bootstrap", "0"]))
"""


def test_video_workers_do_not_hang_after_their_parent_converted_a_frame(tiny_model_dir, tmp_path):
    """PyAV's per-thread swscale context (with its thread pool) is not usable in a forked child: a loader forked
    after the parent process converted a frame hung in its first frame (a notebook, a --workers 0 run)."""
    script = tmp_path / "job.py"
    script.write_text(FORKED_AFTER_A_FRAME)
    env = {**os.environ, "EVALSUITE_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "data"),
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == FEWER_THAN_EXPECTED, proc.stderr[-3000:]
    rows = list(csv.DictReader((next((tmp_path / "out").iterdir()) / "kinetics400.csv").open()))
    assert {r["num_samples"] for r in rows} == {"2"} and {r["num_failed"] for r in rows} == {"0"}
