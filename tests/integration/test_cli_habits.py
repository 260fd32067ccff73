"""CLI habits (issue 19 items 7 and 9): several models per command, --config files and run.json replay with flags
overriding them, CLIP_benchmark's spellings, defaults and an example in every --help."""

import json

import pytest

from evalsuite.cli import build_parser, main
from evalsuite.run_options import run_configs
from helpers import write_class_folders, write_include_task

FRUIT = ["apple", "banana", "cherry", "grape"]


def configs_for(argv, tmp_path=None):
    args = build_parser().parse_args(argv)
    args.argv = argv
    return run_configs(args, build_parser(), tmp_path or __import__("pathlib").Path("/data"))


@pytest.fixture
def fruit(tmp_path):
    inc = tmp_path / "inc"
    write_include_task(inc, "fruit", FRUIT)
    write_class_folders(tmp_path / "data" / "fruit", FRUIT, per_class=2)
    return ["--tasks", "fruit", "--include-path", str(inc), "--data-root", str(tmp_path / "data"), "--workers", "0",
            "--bootstrap", "0"]


def test_config_file_with_flags_overriding_it(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: demo-clip\ntasks: [demo_shapes, demo_heldout]\nbatch_size: 64\ndecoder: tensor\n"
                   "output_dir: out\n")
    (config,) = configs_for(["run", "--config", str(cfg), "--batch-size", "8"])
    assert config.model == "demo-clip" and config.tasks == ["demo_shapes", "demo_heldout"]
    assert config.batch_size == 8 and config.decoder == "tensor" and str(config.output_dir) == "out"


@pytest.mark.parametrize("content,message", [
    ("model: demo-clip\ntasks: [demo]\nbatchsize: 64\n", "unknown option 'batchsize'"),
    ("model: demo-clip\ntasks: [demo]\nbatch_size: 1000000\n", "expected a whole number from 1 to 65536"),
    ("model: demo-clip\ntasks: [demo]\ndecoder: jpeg\n", "not one of pil, tensor, cuda"),
    # values of the wrong kind (the config audit): each was a traceback or a silently other setting
    ("model: 5\ntasks: [demo]\n", "option 'model': 5 is not text"),
    ("model: {a: 1}\ntasks: [demo]\n", "option 'model': {'a': 1} is not a name or path"),
    ("model: [demo-clip, [x]]\ntasks: [demo]\n", "option 'model': ['x'] is not a name or path"),
    ("model: demo-clip\ntasks: [demo]\ndevice: 0\n", "option 'device': 0 is not text"),
    ("model: demo-clip\ntasks: [demo]\noutput_dir: [a, b]\n", "option 'output_dir': ['a', 'b']: one value"),
    ("model: demo-clip\ntasks: [demo]\nbatch_size: null\n", "option 'batch_size': null is no value here"),
    ("model: demo-clip\ntasks: [demo]\nbatch_size: [1, 2]\n", "option 'batch_size': [1, 2]: one value"),
    ("model: demo-clip\ntasks: [demo]\nresume: 'no'\n", "option 'resume': 'no' is not true or false"),
    ("model: demo-clip\ntasks: [demo]\ncache_features: 'false'\n", "'false' is not true or false"),
    ("model: demo-clip\ntasks: [demo]\ndata_root: {a: 1}\n", "option 'data_root': {'a': 1} is not a value"),
    ("model: demo-clip\ntasks: [demo]\npretrained: 5\n", "option 'pretrained': 5 is not text"),
])
def test_bad_config_values_are_named(tmp_path, capsys, content, message):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(content)
    assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_config_values_of_the_flags_kinds_are_taken(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("models: demo-clip\ntasks: demo\ninclude_path: /x\nresume: false\nprecision: null\n")
    (config,) = configs_for(["run", "--config", str(cfg)])  # one model, not one per letter of its name
    assert config.model == "demo-clip" and config.tasks == ["demo"] and config.resume is False
    assert [str(p) for p in config.include_paths] == ["/x"] and config.precision is None


def test_a_models_file_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "models.txt"
    path.write_bytes(b"demo-clip\n\xe9\n")
    assert main(["run", "--models-file", str(path), "--tasks", "demo"]) == 2
    assert f"--models-file {path}: not UTF-8 text" in capsys.readouterr().err


def test_run_json_replays_the_run(tiny_model_dir, fruit, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", *fruit, "--output-dir", str(out)]) == 0
    (folder,) = out.iterdir()
    capsys.readouterr()
    assert main(["run", "--config", str(folder / "run.json")]) == 0
    assert "already done" in capsys.readouterr().err  # the same model, tasks, data and options: nothing to do
    (replayed,) = configs_for(["run", "--config", str(folder / "run.json"), "--limit", "3"])
    assert replayed.limit == 3 and replayed.model == f"local-dir:{tiny_model_dir}"
    assert json.loads((folder / "run.json").read_text())["config"]["tasks"] == replayed.tasks


def test_clip_benchmark_spellings():
    (config,) = configs_for(["run", "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k", "--tasks", "cifar10",
                             "--batch_size", "64", "--dataset_root", "/x", "--num_workers", "2"])
    assert config.model == "open_clip:ViT-B-32/laion2b_s34b_b79k"
    assert (config.batch_size, str(config.data_root), config.workers) == (64, "/x", 2)


def test_several_models_each_in_its_folder_and_one_table(tmp_path, fruit, capsys):
    from evalsuite.models.tiny import write_tiny_clip

    a, b = write_tiny_clip(tmp_path / "a" / "clip", seed=1), write_tiny_clip(tmp_path / "b" / "clip", seed=2)
    models_file = tmp_path / "models.txt"
    models_file.write_text(f"# two checkpoints\nlocal-dir:{b}\n")
    out = tmp_path / "out"
    code = main(["run", "--model", f"local-dir:{a}", "--models-file", str(models_file), *fruit,
                 "--output-dir", str(out)])
    assert code == 0
    assert len(list(out.iterdir())) == 2
    printed = capsys.readouterr().out
    assert printed.count("== local-dir:") == 2 and printed.count("fruit ") == 2


def test_several_models_exit_with_the_most_severe_code(tmp_path, fruit, tiny_model_dir, capsys):
    code = main(["run", "--model", f"local-dir:{tiny_model_dir}", "--model", "no-such-card", *fruit,
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "no-such-card" in err  # the good model still ran and was written
    assert (next((tmp_path / "out").iterdir()) / "fruit.csv").is_file()


@pytest.mark.parametrize("command", ["run", "ls", "prepare", "aggregate", "check", "export", "report", "compare",
                                     "validate"])
def test_every_help_has_an_example_and_defaults(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "example: evalsuite " in out
    if command == "run":
        assert "default 256" in out and "(default: 1000)" in out  # stated in the help, or added by the formatter
