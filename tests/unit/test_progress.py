"""Progress and logs: timestamped lines at most every 30 s off a terminal (done/total, percent, rate, ETA), a final
line, a kept bar on a terminal, [k/N] task prefixes and run.log beside the results."""

import logging

from evalsuite.progress import Progress, progress_mode, track


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_at_most_every_30_seconds_with_rate_and_eta(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="evalsuite")
    progress = Progress("imagenet1k", 10_000, "images", "lines", clock=clock)
    for _ in range(100):  # 100 batches of 50 images, 1 s each
        clock.now += 1
        progress.update(50)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # at 30, 60 and 90 s
    assert lines[0] == "imagenet1k: 1500/10000 images (15%), 50.0 images/s, ETA 2m50s"
    progress.close()
    assert caplog.records[-1].getMessage().startswith("imagenet1k: 5000/10000 images (50%), 50.0 images/s")
    assert caplog.records[-1].getMessage().endswith("in 1m40s")


def test_off_prints_nothing_and_track_counts_items(caplog):
    caplog.set_level(logging.INFO, logger="evalsuite")
    assert list(track([[1, 2], [3]], "t", 3, "off", count=len)) == [[1, 2], [3]]
    assert not caplog.records


def test_bar_is_kept_with_total(capsys):
    progress = Progress("cifar10", 4, "images", "bar")
    progress.update(4)
    progress.close()
    err = capsys.readouterr().err
    assert "cifar10" in err and "4/4" in err and "100%" in err


def test_mode_follows_the_flags():
    assert progress_mode(True) == "bar" and progress_mode(False) == "off"
    assert progress_mode(None) in ("bar", "lines")


def test_run_log_and_task_prefixes(tiny_model_dir, tmp_path, capsys):
    from evalsuite.cli import main
    from helpers import write_class_folders, write_include_task

    write_include_task(tmp_path / "inc", "fruit", ["apple", "pear"])
    write_class_folders(tmp_path / "fruit", ["apple", "pear"], per_class=2)
    out = tmp_path / "out"
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit", "--include-path",
                 str(tmp_path / "inc"), "--data-root", str(tmp_path), "--output-dir", str(out), "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert "[1/1] fruit" in err
    assert "fruit: 4/4 images (100%)" in err  # not a terminal: the timed lines, with the task's total, and a last one
    (folder,) = out.iterdir()
    text = (folder / "run.log").read_text()
    assert "=== evalsuite" in text and "fruit: acc1 =" in text and text[:2] == "20"  # timestamped lines


def test_progress_bar_of_a_task_counts_its_images(tiny_model_dir, tmp_path, capsys):
    from evalsuite.cli import main
    from helpers import write_class_folders, write_include_task

    write_include_task(tmp_path / "inc", "fruit", ["apple", "pear"])
    write_class_folders(tmp_path / "fruit", ["apple", "pear"], per_class=3)
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit", "--include-path",
                 str(tmp_path / "inc"), "--data-root", str(tmp_path), "--output-dir", str(tmp_path / "out"),
                 "--workers", "0", "--progress", "--no-cache-features"]) == 0
    err = capsys.readouterr().err
    assert "fruit: 100%" in err and "6/6" in err  # kept when it ends, with the total in images
