"""The examples and the command line, run as a user would, in subprocesses."""
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(args, timeout=600):
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_there_are_six_examples():
    assert len(EXAMPLES) == 6


def test_derivative_example():
    out = _run([str(ROOT / "examples/01_derivative.py")])
    assert "d cost / dq at q=4: 7.0" in out and "7.000500" in out


def test_partial_derivatives_example():
    out = _run([str(ROOT / "examples/02_partial_derivatives.py")])
    assert "df/dx at (2, 5) = 20.0" in out and "gradient at (2, 5) = (20.0, 7.0)" in out


def test_gradient_descent_example_reaches_the_minimum_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "path.png"
    out = _run([str(ROOT / "examples/03_gradient_descent.py"), "--plot", str(png)])
    assert "after 3000 steps: w = (+1.0000, +1.0000)" in out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_backpropagation_example_prints_the_backward_graph():
    out = _run([str(ROOT / "examples/04_backpropagation.py")])
    assert "forward graph:" in out and "tanh" in out
    assert "by-hand chain rule agrees: True True" in out


def test_training_example_reaches_95_percent_on_digits():
    out = _run([str(ROOT / "examples/05_train_digits.py")])
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    assert accuracy >= 95.0, out


def test_gaussian_process_example_finds_the_noise_and_predicts():
    out = _run([str(ROOT / "examples/06_gaussian_process.py")])
    start, end = map(float, re.findall(r"negative log likelihood (-?[\d.]+)", out))
    assert end < start - 20, out
    noise = float(re.search(r"noise ([\d.]+)", out).group(1))
    error = float(re.search(r"new points: ([\d.]+)", out).group(1))
    assert 0.07 < noise < 0.15 and error < 0.25, out


def test_graphc_demo_shortest_settings(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    out = _run(["-m", "graphc.cli", "demo", "--epochs", "2", "--no-progress", "--plot", str(png)])
    assert re.search(r"graphc\s+[\d.]+%\s+[\d.]+", out)
    assert re.search(r"NumPy by hand\s+[\d.]+%", out) and "x the speed of the NumPy loop" in out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_graphc_cache_info():
    out = _run(["-m", "graphc.cli", "cache", "info"])
    assert "cache directory:" in out and "modules:" in out


def test_graphc_cache_clear_removes_only_graphcs_files(tmp_path, monkeypatch, capsys):
    # GRAPHC_CACHE_DIR may name a directory that holds other files too
    from graphc import cli
    (tmp_path / "__pycache__").mkdir()
    module, lowering = "graphc_" + "0123" * 6, "graphc_" + "4567" * 8     # keys: hashes
    ours = [tmp_path / f"{module}.py", tmp_path / ".tmp_x1y2z3w4.py",
            tmp_path / f"{lowering}.lowered", tmp_path / f"{lowering}.x1y2.tmp",
            tmp_path / "__pycache__" / f"{module}.run-40.py311.nbi",
            tmp_path / "__pycache__" / f"{module}.run-40.py311.1.nbc",
            tmp_path / "exported_kernels" / "__pycache__" / "graphc_kernels_0a1b.gemm-9.py311.nbi"]
    theirs = [tmp_path / "notes.txt", tmp_path / "__pycache__" / "notes.cpython-311.pyc",
              tmp_path / "graphc_helpers.py"]
    (tmp_path / "exported_kernels" / "__pycache__").mkdir(parents=True)
    for f in ours + theirs:
        f.write_text("x" * 100_000)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "modules: 1\nsize: 0.6 MB" in out       # its own 6 files only; the kernels apart
    assert f"kernels exported steps share: 0.1 MB ({tmp_path / 'exported_kernels'})" in out
    assert cli.main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == (
        f"removed 1 cached module from {tmp_path}\n"
        f"removed the kernels exported steps share ({tmp_path / 'exported_kernels'})\n")
    assert not any(f.exists() for f in ours) and all(f.exists() for f in theirs)
    assert not (tmp_path / "exported_kernels").exists()


@pytest.mark.parametrize("argv, message", [
    (["demo", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["demo", "--plot", "/nonexistent/loss.png"], "argument --plot: .* does not exist"),
    (["bench", "--threads", "0"], "argument --threads: must be >= 1, got 0"),
    (["bench", "--json", "/nonexistent/b.json"], "argument --json: .* does not exist"),
    (["warm", "sort", "svd"], r"unknown kernel families \['svd'\]; choose from inverse_and_solve"),
], ids=["epochs", "plot", "threads", "json", "warm-family"])
def test_bad_command_line_values_are_refused_before_any_work(argv, message, capsys):
    from graphc import cli
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_graphc_warm_compiles_each_kernel_family_named_once():
    import io
    from graphc import warm
    out = io.StringIO()
    warm.warm(["products", "products"], out=out)
    assert re.fullmatch(r"products +[\d.]+ s\ngraphc's kernels compiled in [\d.]+ s\n",
                        out.getvalue()), out.getvalue()


def test_graphc_bench_quick_prints_the_ratio_table(tmp_path):
    # options before any other word reach the harness (not swallowed by the CLI's parser)
    out = _run(["-m", "graphc.cli", "bench", "--quick", "--workloads", "W1", "--dtype", "float64",
                "--impls", "numpy,graphc", "--no-progress", "--no-cold"])
    assert re.search(r"^threads: 1", out, re.M)
    row = re.search(r"^W1\s+float64\s+[\d.]+ \[[\d.]+-[\d.]+\]\s+[\d.]+ \[[\d.]+-[\d.]+\]\s+"
                    r"([\d.]+)x", out, re.M)
    assert row and float(row.group(1)) > 0, out
