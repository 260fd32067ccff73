"""A non-editable install (the wheel) finds tasks/, prompts/, model cards and the demo weights."""

import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_wheel_install_runs_validate_and_demo_task(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("evalsuite-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    code = (
        "import evalsuite, evalsuite.resources as r, sys\n"
        f"assert evalsuite.__file__.startswith({str(target)!r}), evalsuite.__file__\n"
        "assert r.builtin_root().name == '_data', r.builtin_root()\n"
        "from evalsuite.cli import main\n"
        f"sys.exit(main(['run', '--model', 'demo-clip', '--tasks', 'demo_heldout', '--output-dir', {str(tmp_path / 'out')!r}]))"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "76.25" in out.stdout
