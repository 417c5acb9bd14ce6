"""The decorator's on-disk cache: warm imports skip the pipeline, and a cache never lies."""

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import stagegen
from stagegen import VerificationError, api, cache, proof

MODULE = textwrap.dedent("""\
    import math
    from stagegen import staged

    @staged(verify=False)
    def softplus(x):
        return math.log(1 + math.exp(x))

    @staged
    def neuron(w0, w1, x0, x1, b):
        z = w0 * x0 + w1 * x1 + b
        return 1.0 / (1 + math.exp(-z))
    """)

PROBE = textwrap.dedent("""\
    import sys
    import model
    heavy = sorted(m for m in ("black", "jinja2", "sympy", "stagegen.parse", "stagegen.emit")
                   if m in sys.modules)
    print(",".join(heavy) or "-")
    print(model.softplus.backward(0.5), model.neuron.backward(0.1, 0.2, 0.3, 0.4, 0.5)[0])
    print(model.neuron.verification.functions[0].reference)
    print(model.neuron.__module__, sys.modules["stagegen"].__file__)
    """)


def child_env(folder, cache_dir):
    """The model's folder first on the path, then this checkout's (never an installed stagegen)."""
    path = os.pathsep.join([str(folder), str(Path(stagegen.__file__).parent.parent)])
    return {**os.environ, "STAGEGEN_CACHE_DIR": str(cache_dir), "PYTHONPATH": path}


def import_model(folder, cache_dir):
    env = child_env(folder, cache_dir)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=folder, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def entry_of(path):
    return cache.parse(path.read_bytes(), path.stem)


@pytest.fixture
def model(tmp_path):
    (tmp_path / "model.py").write_text(MODULE)
    return tmp_path


def test_a_warm_import_loads_none_of_the_pipeline(model, tmp_path):
    cache_dir = tmp_path / "cache"
    cold = import_model(model, cache_dir)
    warm = import_model(model, cache_dir)
    assert "black" in cold[0] and "stagegen.parse" in cold[0] and "sympy" in cold[0]
    assert warm[0] == "-"
    assert warm[1:] == cold[1:]  # the same gradients and the same proof report
    assert warm[3] == f"model {stagegen.__file__}"  # this checkout's stagegen was measured
    assert "SymPy" in warm[2]
    entries = [entry_of(p) for p in cache_dir.iterdir()]
    assert len(entries) == 2 and all(entries)  # one entry per function, nothing else
    assert sorted(e.proven for e in entries) == [False, True]  # softplus asked for no proof


def test_the_cache_can_be_turned_off(model, tmp_path):
    import_model(model, "off")
    assert not (tmp_path / "off").exists()


def test_an_edited_function_is_a_new_entry(model, tmp_path):
    cache_dir = tmp_path / "cache"
    import_model(model, cache_dir)
    first = set(os.listdir(cache_dir))
    (model / "model.py").write_text(MODULE.replace("1 + math.exp(x)", "2 + math.exp(x)"))
    lines = import_model(model, cache_dir)
    assert len(set(os.listdir(cache_dir)) - first) == 1
    assert float(lines[1].split()[0]) == pytest.approx(
        __import__("math").exp(0.5) / (2 + __import__("math").exp(0.5))
    )


def test_a_corrupt_entry_is_a_miss_not_a_wrong_gradient(model, tmp_path):
    cache_dir = tmp_path / "cache"
    good = import_model(model, cache_dir)
    for entry in cache_dir.iterdir():
        entry.write_text("garbage, not a generated module\n")
    assert import_model(model, cache_dir) == good
    assert all(entry_of(p) for p in cache_dir.iterdir())  # rewritten


def test_two_processes_importing_at_once_agree_and_leave_no_temporary_files(model, tmp_path):
    cache_dir = tmp_path / "cache"
    env = child_env(model, cache_dir)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE], cwd=model, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [run.communicate()[0].splitlines()[1:] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert all(out == outputs[0] for out in outputs)
    assert not [p for p in os.listdir(cache_dir) if p.endswith(".tmp")]
    assert len(os.listdir(cache_dir)) == 2
    assert import_model(model, cache_dir)[0] == "-"


def test_errors_are_never_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("STAGEGEN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "broken.py").write_text("def h(x):\n    return x % 2\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import broken

        for _ in range(2):
            with pytest.raises(stagegen.StagegenError, match="broken.py:2"):
                stagegen.staged(broken.h)
    finally:
        sys.path.remove(str(tmp_path))
    assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache")


def test_an_unwritable_cache_is_skipped(model, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would go")
    assert import_model(model, blocker)[0] != "-"  # generated, and no error


def test_cache_directory_defaults(monkeypatch):
    monkeypatch.delenv("STAGEGEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert cache.directory() == os.path.join("/somewhere", "stagegen")
    monkeypatch.setenv("STAGEGEN_CACHE_DIR", "off")
    assert cache.directory() is None


# ------------------------------------------------------------------ in one process

FORWARD = "import math\n\n\ndef g(x):\n    return math.sin(x) * x\n"


def dg(x):
    return math.cos(x) * x + math.sin(x)


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """(cache directory, counts of generations and proofs) with the cache in tmp_path."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("STAGEGEN_CACHE_DIR", str(folder))
    counts = {"builds": 0, "proofs": 0}
    build_programs, check_build = api.build_programs, proof.check_build

    def counting_build(*args, **kwargs):
        counts["builds"] += 1
        return build_programs(*args, **kwargs)

    def counting_proof(*args, **kwargs):
        counts["proofs"] += 1
        return check_build(*args, **kwargs)

    monkeypatch.setattr(api, "build_programs", counting_build)
    monkeypatch.setattr(proof, "check_build", counting_proof)
    return folder, counts


def load_module(path: Path):
    name = f"stagegen_cache_test_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def forward(tmp_path):
    path = tmp_path / "forward.py"
    path.write_text(FORWARD)
    return load_module(path).g


def cut_mid_line(text):
    cut = len(text) * 2 // 3
    while text[cut - 1] == "\n":
        cut -= 1
    return text[:cut]


def cut_at_line_end(text):
    lines = text.splitlines(keepends=True)
    return "".join(lines[:-1])  # the backward's last line (its return) is gone


def edit_gradient(text):
    head, marker, tail = text.rpartition("return ")
    return head + marker + "-2.0 * " + tail if marker else text


def edit_report(text):
    return text.replace('"symbolic"', '"sampled"').replace("SymPy", "nothing")


DAMAGES = {
    "garbage": lambda text: "garbage, not a generated module\n",
    "truncated mid-line": cut_mid_line,
    "truncated at a line end": cut_at_line_end,
    "edited gradient": edit_gradient,
    "edited report": edit_report,
    "emptied": lambda text: "",
}


@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_entry_is_a_miss_and_is_rewritten(counted, forward, damage, verify):
    folder, counts = counted
    stagegen.staged(forward, verify=verify)
    good = {p.name: p.read_text() for p in folder.iterdir()}
    for p in folder.iterdir():
        p.write_text(damage(p.read_text()))
    if {p.name: p.read_text() for p in folder.iterdir()} == good:
        pytest.skip("an entry without a proof report has no report to edit")
    stagegen.staged(forward, verify=verify)  # no error, however the entry was damaged
    assert forward.backward(0.7) == pytest.approx(dg(0.7))
    assert counts["builds"] == 2  # the damaged entry was not served
    if verify:
        assert counts["proofs"] == 2
        report = forward.verification
        assert [c.method for c in report.functions[0].local_checks] == ["symbolic"] * len(
            report.functions[0].local_checks
        )
        assert "SymPy" in report.functions[0].reference
    assert {p.name: p.read_text() for p in folder.iterdir()} == good  # rewritten as it was
    stagegen.staged(forward, verify=verify)
    assert counts["builds"] == 2  # and served from then on


def test_an_entry_under_another_key_is_a_miss(counted, forward, tmp_path):
    folder, counts = counted
    stagegen.staged(forward)
    (entry,) = folder.iterdir()
    other = tmp_path / "other.py"
    other.write_text(FORWARD.replace("math.sin(x) * x", "math.cos(x) * x"))
    stagegen.staged(load_module(other).g)
    for p in folder.iterdir():
        if p != entry:
            shutil.copy(entry, p)  # the cos function's entry now holds the sin function's
    cos_g = load_module(other).g
    stagegen.staged(cos_g)
    assert counts["builds"] == 3
    assert cos_g.backward(0.7) == pytest.approx(-math.sin(0.7) * 0.7 + math.cos(0.7))


def test_a_changed_stagegen_is_a_miss(counted, forward, monkeypatch):
    folder, counts = counted
    stagegen.staged(forward)
    stagegen.staged(forward)
    assert counts["builds"] == 1
    monkeypatch.setattr(cache, "code_hash", lambda: "a stagegen with other code")
    stagegen.staged(forward)
    assert counts["builds"] == 2
    assert len(list(folder.iterdir())) == 2


def test_the_code_hash_covers_the_package_and_its_templates(tmp_path):
    package = Path(stagegen.__file__).parent
    copy = tmp_path / "stagegen"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    templates = package / "templates"
    if not templates.is_dir():
        templates = package.parent / "templates"
        shutil.copytree(templates, tmp_path / "templates")
    template = next(p for p in (tmp_path).rglob("templates/*") if p.is_file())
    first = cache.hash_package(str(copy))
    assert cache.hash_package(str(copy)) == first
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")
    assert cache.hash_package(str(copy)) == first  # bytecode is not code
    (copy / "reverse.py").write_text((copy / "reverse.py").read_text() + "\n# edited\n")
    second = cache.hash_package(str(copy))
    assert second != first
    template.write_text(template.read_text() + "\n")
    assert cache.hash_package(str(copy)) not in (first, second)
    assert cache.code_hash() == cache.code_hash() == cache.hash_package(str(package))


def test_an_entry_without_proof_is_never_served_to_a_caller_who_asks_for_one(counted, forward):
    folder, counts = counted
    stagegen.staged(forward, verify=False)
    assert not hasattr(forward, "verification")
    stagegen.staged(forward, verify=True)
    assert counts == {"builds": 2, "proofs": 1}
    assert forward.verification.functions[0].name == "g"
    stagegen.staged(forward, verify=True)  # the entry now carries the proof
    stagegen.staged(forward, verify=False)  # and serves a caller who did not ask for one
    assert counts == {"builds": 2, "proofs": 1}
    assert len(list(folder.iterdir())) == 1


def test_a_failed_proof_raises_at_decoration_and_is_never_cached(counted, forward, monkeypatch):
    folder, counts = counted

    def failing(build, points=5):
        raise VerificationError("g: the gradient disagrees with SymPy at x=0.5")

    monkeypatch.setattr(proof, "check_build", failing)
    for _ in range(2):
        with pytest.raises(VerificationError, match="disagrees"):
            stagegen.staged(forward)
    assert counts["builds"] == 2
    assert not hasattr(forward, "backward")
    assert not folder.exists() or not list(folder.iterdir())


def test_the_key_of_a_function_is_the_same_in_every_process(tmp_path):
    # A set literal compiles to a frozenset constant, whose order follows string hashing.
    (tmp_path / "sets.py").write_text(
        "def g(x, mode='b'):\n"
        "    if mode in {'alpha', 'beta', 'gamma', 'delta'}:\n"
        "        return x * x\n"
        "    return x\n"
    )
    probe = (
        "import sets\nfrom stagegen.introspect import function_source\n"
        "print(function_source(sets.g).fingerprint().encode().hex())"
    )
    keys = set()
    for seed in ("1", "2", "3"):
        env = {**child_env(tmp_path, "off"), "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        )
        keys.add(run.stdout)
    assert len(keys) == 1
