"""The stagegen command: files written, --check, --stdout, exit codes, safety."""

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from stagegen import cli
from stagegen import gates
from stagegen.numeric import central_differences

GOOD = textwrap.dedent("""
    import math

    def f(x, y):
        q = x * y
        f = math.sin(q) + x
        return f

    def g(a):
        return a**3
    """)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(GOOD)
    return path


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "stagegen", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_writes_backward_beside_the_source(model):
    result = run(model)
    assert result.returncode == 0, result.stderr
    out = model.with_name("model_backward.py")
    text = out.read_text()
    assert text.startswith(cli.GENERATED_MARK)
    assert "def f_backward(x, y, df=1.0):" in text and "def g_backward(a, dout=1.0):" in text
    assert "proven against SymPy" in result.stderr and "Traceback" not in result.stderr
    namespace = {}
    exec(text, namespace)
    assert namespace["g_backward"](2.0) == pytest.approx(12.0)


def test_console_script_is_installed(model):
    exe = shutil.which("stagegen")
    assert exe, "the stagegen console script is not on PATH"
    result = subprocess.run(
        [exe, "--stdout", "--no-verify", str(model)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "def f_backward" in result.stdout


def test_stdout_writes_no_file(model):
    result = run("--stdout", model)
    assert result.returncode == 0
    assert "def f_backward" in result.stdout
    assert not model.with_name("model_backward.py").exists()


def test_function_option_selects(model):
    result = run("--stdout", "--function", "g", model)
    assert "def g_backward" in result.stdout and "def f_backward" not in result.stdout
    assert "stagegen model.py --function g" in result.stdout


def test_wrt_option_narrows(model):
    result = run("--stdout", "--function", "f", "--wrt", "y", model)
    assert result.returncode == 0, result.stderr
    namespace = {}
    exec(result.stdout, namespace)
    dy = namespace["f_backward"](2.0, 3.0)
    assert isinstance(dy, float)


def test_check_reports_missing_stale_and_current(model):
    assert run("--check", model).returncode == 1  # missing
    assert run(model).returncode == 0
    assert run("--check", model).returncode == 0  # up to date
    out = model.with_name("model_backward.py")
    out.write_text(out.read_text().replace("df=1.0", "df=2.0"))
    result = run("--check", "--diff", model)
    assert result.returncode == 1
    assert "stale" in result.stderr and str(out) in result.stderr
    assert "-def f_backward(x, y, df=2.0):" in result.stdout
    assert out.read_text().count("df=2.0") >= 1  # --check never writes


def test_no_verify_skips_the_proof(model):
    result = run("--no-verify", model)
    assert result.returncode == 0
    assert "not verified" in result.stderr


def test_refuses_to_overwrite_a_hand_written_file(model):
    out = model.with_name("model_backward.py")
    out.write_text("# my own backward, do not lose\n")
    result = run(model)
    assert result.returncode == 2
    assert "refusing to overwrite" in result.stderr
    assert out.read_text() == "# my own backward, do not lose\n"
    assert run("--force", model).returncode == 0
    assert out.read_text().startswith(cli.GENERATED_MARK)


def test_generated_files_given_as_input_are_skipped(model):
    run(model)
    result = run(model, model.with_name("model_backward.py"))
    assert result.returncode == 0
    assert "skipped" in result.stderr
    assert not model.with_name("model_backward_backward.py").exists()


def test_many_files_and_worst_status(tmp_path, model):
    bad = tmp_path / "bad.py"
    bad.write_text("def h(x):\n    return x // 2\n")
    result = run(model, bad)
    assert result.returncode == 2
    assert model.with_name("model_backward.py").exists()  # the good file is still written
    assert not bad.with_name("bad_backward.py").exists()
    assert f"{bad}:2:12: error: floor division" in result.stderr


def test_usage_error_exits_2():
    result = run()
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_no_colour_when_piped(model):
    result = run(model)
    assert "\033[" not in result.stderr


def test_colour_on_a_terminal(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\033[" in cli.Style(Tty()).ok("x")
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\033[" not in cli.Style(Tty()).ok("x")


def test_a_wrong_gate_fails_verification_and_writes_nothing(model, monkeypatch, capsys):
    """Sabotage the sin gate in-process: the proof must catch it (exit 1, no file)."""
    # the rule only: the table's SymPy meaning of sin stays (it is checked against math.sin)
    wrong = dataclasses.replace(
        gates.FUNCTIONS["sin"], rule=lambda out, a: (gates._call("sin", a),)
    )
    monkeypatch.setitem(gates.FUNCTIONS, "sin", wrong)
    status = cli.main([str(model)])
    err = capsys.readouterr().err
    assert status == 1
    assert "verification failed" in err and "local gradient of stage (2)" in err
    assert not model.with_name("model_backward.py").exists()


def test_atomic_write_leaves_no_temporary_files(model):
    run(model)
    leftovers = [p.name for p in model.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_python_dash_m_and_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("stagegen ")


def test_internal_errors_have_no_traceback(model, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("stagegen.reverse.differentiate", boom)
    status = cli.main(["--no-verify", str(model)])
    err = capsys.readouterr().err
    assert status == 3
    assert "internal error in stagegen: RuntimeError: simulated bug" in err
    assert "Traceback" not in err


def test_regenerating_leaves_identical_bytes(model):
    run(model)
    out = model.with_name("model_backward.py")
    first = out.read_bytes()
    os.utime(out, (0, 0))
    run(model)
    assert out.read_bytes() == first


@pytest.mark.slow
def test_a_file_of_ten_thousand_stages(tmp_path):
    """Generation stays linear (no quadratic step in parsing, the sweep or formatting), and the
    result is right: compared with a central difference of the forward at one point."""
    steps = ["x = r * x * (1 - x)", "x = math.sin(x) + 0.5 * x", "x = math.tanh(x * r) + 0.1"]
    body = "".join(f"    {steps[i % 3]}\n" for i in range(10_000))
    source = tmp_path / "long.py"
    source.write_text(f"import math\n\n\ndef chain(x, r):\n{body}    return x\n")
    result = run("long.py", "--no-verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    forward, backward = {}, {}
    exec(source.read_text(), forward)
    exec((tmp_path / "long_backward.py").read_text(), backward)
    f = forward["chain"]
    dx, dr = backward["chain_backward"](0.3, 0.9)
    want = central_differences(f, [0.3, 0.9], [0, 1])
    assert dx == pytest.approx(want[0], rel=1e-5, abs=1e-9)
    assert abs(dr) > 0.01  # r feeds every stage: a real gradient, not a vanishing one
    assert dr == pytest.approx(want[1], rel=1e-5)


def test_written_files_get_ordinary_permissions(model):
    """The temporary file is owner-only; the file it becomes must not be."""
    old = os.umask(0o022)
    try:
        assert run(model.name, cwd=model.parent).returncode == 0
    finally:
        os.umask(old)
    written = model.parent / "model_backward.py"
    assert written.stat().st_mode & 0o777 == 0o644
    written.chmod(0o664)  # regenerating keeps what the user chose
    assert run(model.name, "--force", cwd=model.parent).returncode == 0
    assert written.stat().st_mode & 0o777 == 0o664
