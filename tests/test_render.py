"""Pictures of graphs: DOT text always; SVG/PNG where Graphviz's dot exists."""
import shutil

import numpy as np
import pytest

import graphc as gc


def _step_graph():
    from graphc import demo
    params = demo.init_mlp([8, 6, 3])
    step = gc.compile_step(demo.mlp_loss, gc.optim.SGD(0.1))
    # the graph only: lower(), no Numba compile (a ReLU MLP's SGD step compiles
    # and runs in test_shape_reuse's test_training_step_is_right_for_every_batch_size)
    return step.lower(params, np.ones((4, 8), np.float32), np.array([0, 1, 2, 0])).optimized


def test_dot_marks_roles_parameters_outputs_and_kernels():
    dot = _step_graph().to_dot()
    assert "#cfe2f3" in dot and "#f4cccc" in dot and "#d9ead3" in dot   # fwd, bwd, update
    assert "[0]['W0']" in dot and "peripheries=2" in dot
    assert "subgraph cluster_" in dot and 'label="kernel' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_render_writes_a_picture(tmp_path, suffix):
    path = _step_graph().render(tmp_path / f"step.{suffix}")
    data = open(path, "rb").read()
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in data


def test_render_without_graphviz_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz") as e:
        gc.trace(lambda x: x * 2.0, np.ones(2)).render(tmp_path / "g.svg")
    assert isinstance(e.value, gc.GraphcError)
