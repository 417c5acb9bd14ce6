"""The public API's promises: determinism, a light import, never running the user's module,
and a non-editable install that finds its templates."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import stagegen

ROOT = Path(__file__).resolve().parent.parent
STAGED = (ROOT / "examples" / "staged.py").read_text()


def test_same_input_same_bytes_across_processes():
    code = "import sys, stagegen; sys.stdout.write(stagegen.generate(sys.stdin.read()))"
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run(
            [sys.executable, "-c", code], input=STAGED, capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert outputs.pop() == stagegen.generate(STAGED)


def test_import_is_light():
    code = "import sys, stagegen; print(sorted(m for m in ('sympy', 'black', 'jinja2') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_generation_never_runs_the_users_module(tmp_path):
    source = textwrap.dedent("""
        import os
        open(os.path.join(os.path.dirname(__file__), "ran.txt"), "w").write("ran")
        raise SystemExit("the module was executed")

        def f(x):
            return x * x
        """)
    path = tmp_path / "sideeffect.py"
    path.write_text(source)
    result = subprocess.run(
        [sys.executable, "-m", "stagegen", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "ran.txt").exists()
    assert (tmp_path / "sideeffect_backward.py").exists()


def test_generated_module_needs_only_the_standard_library():
    text = stagegen.generate(STAGED)
    imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import math"]


def test_wrt_validation():
    with pytest.raises(stagegen.StagegenError, match="not a parameter"):
        stagegen.generate(STAGED, wrt=["z"])


def test_wrt_keeps_parameter_order_and_returns_bare_for_one():
    ns = {}
    exec(stagegen.generate(STAGED, wrt=["y", "x"]), ns)
    both = ns["f_backward"](3.0, -4.0)
    ns = {}
    exec(stagegen.generate(STAGED, wrt="y"), ns)
    only_y = ns["f_backward"](3.0, -4.0)
    assert isinstance(only_y, float) and only_y == pytest.approx(both[1])


@pytest.mark.slow
def test_non_editable_install_in_a_fresh_venv(tmp_path):
    """Build the wheel, install it (not editable) into a new virtual environment, and run that
    environment's stagegen command: the templates must ship inside the package."""
    wheel_dir, venv = tmp_path / "wheel", tmp_path / "venv"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    wheels = list(wheel_dir.glob("stagegen-*.whl"))
    assert len(wheels) == 1
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    # The new environment must see its own installed stagegen, not a checkout on PYTHONPATH.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheels[0])],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import stagegen.emit as e; print(e.template_dir())"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean,
    )
    assert "site-packages" in where.stdout and where.stdout.strip().endswith(
        "stagegen/templates"
    ), where
    model = tmp_path / "staged.py"
    model.write_text(STAGED)
    run = subprocess.run(
        [str(bin_dir / "stagegen"), "staged.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean,
    )
    assert run.returncode == 0, run.stderr
    assert "proven against SymPy" in run.stderr
    golden = (ROOT / "examples" / "staged_backward.py").read_text()
    assert (tmp_path / "staged_backward.py").read_text() == golden
