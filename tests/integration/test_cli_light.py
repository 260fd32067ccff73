"""--help, ls and validate start without importing torch; bad input gets exit code 2 and one line."""

import subprocess
import sys

import pytest

from evalsuite.cli import main


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [["ls", "tasks"], ["ls", "suites"], ["ls", "models"], ["validate"]])
def test_commands_do_not_import_torch(argv):
    out = run_py(
        "import sys\nfrom evalsuite.cli import main\n"
        f"code = main({argv!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)"
    )
    assert out.returncode == 0, out.stderr


def test_help_does_not_import_torch():
    out = run_py("import sys\nfrom evalsuite.cli import main\n"
                 "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                 "assert 'torch' not in sys.modules")
    assert out.returncode == 0, out.stderr


def test_ls_lists_catalogue(capsys):
    assert main(["ls", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "cifar10" in out and "imagenet1k" in out and "demo_shapes" in out
    assert main(["ls", "models"]) == 0
    assert "demo-clip" in capsys.readouterr().out
    assert main(["ls", "tasks", "--tag", "demo"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(listed) == ["demo_clips", "demo_heldout", "demo_retrieval", "demo_shapes"]


def test_unknown_task_is_one_line_and_exit_2(capsys, tmp_path):
    code = main(["run", "--model", "demo-clip", "--tasks", "cifar1O", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert (err[-1].startswith("evalsuite: error: unknown task or suite 'cifar1O'")
            and "Did you mean: cifar10" in err[-1])
    assert not any(tmp_path.iterdir())


def test_unknown_model_exit_2(capsys, tmp_path):
    code = main(["run", "--model", "demo-clipp", "--tasks", "demo", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "Did you mean: demo-clip" in capsys.readouterr().err


def test_bad_yaml_in_include_path_exit_2(capsys, tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "broken.yaml").write_text("name: broken\ntype: classification\nversion: [1\n")
    code = main(["validate", "--include-path", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "broken.yaml:" in err and "invalid YAML" in err


def test_validate_checks_prompts_of_included_task(capsys, tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mine.yaml").write_text(
        "name: mine\ntype: classification\nversion: 1\nsource: {kind: image_folder}\nclassnames: cifar10\n"
        "templates: cifar10\nnum_classes: 11\nmetrics: [acc1]\nprimary_metric: acc1\n")
    assert main(["validate", "--include-path", str(tmp_path), "--tasks", "mine"]) == 2
    assert "num_classes=11" in capsys.readouterr().err


def test_bad_flag_values_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["run", "--model", "demo-clip", "--tasks", "demo", "--batch-size", "0"])
    assert exc.value.code == 2
