"""Model builder: shapes, DenseNet-BC-100 size, and that layers read only their pattern inputs."""
import pytest
import torch

from nas.engine.model import DenseLayer, PatternNet, build_model, count_flops, count_params
from nas.engine.run_config import ArchConfig
from nas.engine.spec import make_spec
from nas.errors import UserError
from search_spaces import (
    STYLES,
    TEMPLATES,
    Block,
    Pattern,
    distance_matrix,
    make_space,
    template_pattern,
)
from search_spaces.distances import UNREACHABLE


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("layers", [[1], [5], [4, 3], [3, 3, 3]])
@pytest.mark.parametrize("bottleneck", [True, False])
def test_output_shape_every_template(name, layers, bottleneck):
    arch = ArchConfig(growth=4, bottleneck=bottleneck, input_shape=(3, 16, 16), num_classes=7)
    model = PatternNet(template_pattern(name, layers, min(2, min(layers))), arch)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)


def test_densenet_bc_100_param_count():
    model = PatternNet(template_pattern("dense", [16, 16, 16]), ArchConfig(growth=12))
    # The paper reports 0.8M; reference implementations count 769,162.
    assert 0.765e6 <= count_params(model) <= 0.80e6


def test_flops_closed_form_for_chain():
    """One chain layer without bottleneck on an HxW map: the count is the conv's 2*C*k*9*H*W plus
    the stem and head, all computed by hand."""
    arch = ArchConfig(growth=4, bottleneck=False, stem_channels=3, input_shape=(1, 8, 8),
                      num_classes=2)
    model = PatternNet(template_pattern("chain", 1), arch)
    stem = 2 * 1 * 3 * 9 * 64
    layer = 2 * 3 * 4 * 9 * 64
    head = 2 * 4 * 2
    assert count_flops(model, arch.input_shape) == stem + layer + head


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("arch", [
    ArchConfig(growth=4, input_shape=(3, 16, 16), num_classes=5),
    ArchConfig(growth=3, bottleneck=False, stem_stride=2, compression=1.0, input_shape=(1, 12, 8)),
    ArchConfig(growth=4, bn_size=2, memory_efficient=True, stem_stride=4, input_shape=(1, 28, 28)),
    ArchConfig(growth=3, stem="imagenet", input_shape=(3, 40, 40)),
], ids=["bottleneck", "plain-stride2", "memory-efficient-stride4", "imagenet-stem"])
def test_flops_counted_by_hooks_equal_torchs_flop_counter(style, arch):
    """count_flops reads each conv's and linear layer's output: exactly what FlopCounterMode
    counts, for every style and layer variant (a stored spec's FLOPs must still match)."""
    from torch.utils.flop_counter import FlopCounterMode

    for template in ("log", "dense", "nearest"):
        model = PatternNet(template_pattern(template, [3, 4], k=2, style=style), arch)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(torch.zeros(1, *arch.input_shape))
        model.train()
        assert count_flops(model, arch.input_shape) == counter.get_total_flops() > 0
        assert model.training  # left as it was


def test_layers_read_only_their_inputs():
    """Gradient test: each node's output depends on exactly the nodes it reaches in the DAG."""
    pattern = Pattern([Block([[0], [0], [1], [1, 3], [0, 2, 4]])])  # node 2 unread by 3, 4
    arch = ArchConfig(growth=3, bottleneck=True, input_shape=(2, 6, 6), num_classes=2)
    model = PatternNet(pattern, arch).eval()
    block = model.body.stages[0]
    x = torch.randn(1, arch.stem_width, 6, 6, requires_grad=True)
    nodes = [x]
    for layer, reads in zip(block.layers, block.reads):
        nodes.append(layer([nodes[j] for j in reads]))
    # Layer 4 reads 1 and 3; 3 reads 1; 1 reads 0. Node 2 must get zero gradient from node 4.
    grads = torch.autograd.grad(nodes[4].sum(), nodes[1:4], allow_unused=True)
    assert grads[1] is None or torch.count_nonzero(grads[1]) == 0
    assert torch.count_nonzero(grads[0]) > 0 and torch.count_nonzero(grads[2]) > 0
    # Block output reads 0, 2, 4 only: channels 3 (stem) + growth + growth.
    assert block.out_channels == arch.stem_width + 2 * arch.growth


@pytest.mark.parametrize("style", STYLES)
def test_memory_efficient_matches_plain(style):
    pattern = template_pattern("log", [6, 6], style=style)
    torch.manual_seed(0)
    plain = PatternNet(pattern, ArchConfig(growth=4, input_shape=(3, 16, 16)))
    efficient = PatternNet(pattern, ArchConfig(growth=4, input_shape=(3, 16, 16),
                                          memory_efficient=True))
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 16, 16)
    out_a, out_b = plain(x), efficient(x)
    out_a.sum().backward()
    out_b.sum().backward()
    assert torch.allclose(out_a, out_b, atol=1e-5)
    for (_, pa), (_, pb) in zip(plain.named_parameters(), efficient.named_parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4)


def test_too_small_input_is_a_clear_error():
    with pytest.raises(UserError, match="too small for 4 blocks"):
        PatternNet(template_pattern("log", [2] * 4),
                   ArchConfig(input_shape=(1, 8, 8), stem_stride=2))


def test_build_model_from_spec_file(tmp_path):
    arch = ArchConfig(growth=4, input_shape=(1, 12, 12))
    spec = make_spec(template_pattern("nearest", [5, 5], 2), arch, {"study": "s", "trial": 3})
    path = spec.save(tmp_path / "spec.json")
    model = build_model(path)
    assert count_params(model) == spec.metrics["params"]
    assert model(torch.randn(1, 1, 12, 12)).shape == (1, 10)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_output_shape_every_template_and_style(style, template):
    arch = ArchConfig(growth=4, input_shape=(3, 16, 16), num_classes=7)
    model = PatternNet(template_pattern(template, [3, 4, 2], style=style), arch)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)


class _Recorder:
    """Keeps every DenseLayer's output, in call order, with its gradient."""

    def __init__(self, model):
        self.outputs = []
        for m in model.modules():
            if isinstance(m, DenseLayer):
                m.register_forward_hook(lambda _m, _i, out: self.outputs.append(out))


def _layer_nodes(pattern):
    """Global node numbers (as in distance_matrix) of the layers, in the order they run."""
    nodes, offset = [], 0
    for block in pattern.blocks:
        nodes += [offset + i for i in range(1, block.num_layers + 1)]
        offset += block.num_layers + 1
    return nodes


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_layer_gets_gradient_exactly_from_the_layers_that_reach_it(style, seed):
    """In every style, layer i's output depends on layer j's (nonzero gradient) exactly when
    the pattern has a path j -> i: nothing leaks through transitions or contexts."""
    import optuna

    space = make_space("free", [4, 5, 3], style=style)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    pattern = space.suggest(trial)
    model = PatternNet(pattern, ArchConfig(growth=16, input_shape=(2, 32, 32))).eval()
    recorder = _Recorder(model)
    model(torch.randn(2, 2, 32, 32))
    outs, nodes = recorder.outputs, _layer_nodes(pattern)
    d = distance_matrix(pattern)
    assert len(outs) == len(nodes)
    checked = set()
    for a in range(len(outs)):
        grads = torch.autograd.grad(outs[a].sum(), outs[:a], allow_unused=True,
                                    retain_graph=True) if a else ()
        for b, g in enumerate(grads):
            reaches = d[nodes[b], nodes[a]] != UNREACHABLE
            assert (g is not None and torch.count_nonzero(g) > 0) == reaches, (b, a)
            checked.add(reaches)
    assert checked == {True, False}  # the pattern had both kinds of pairs


def test_network_styles_table_matches_the_builder():
    """docs/network_styles.md's 3x16, k=12 table: every number is what skipnas builds and
    measures."""
    from pathlib import Path

    from search_spaces import distance_stats

    readme = (Path(__file__).resolve().parents[1] / "docs" / "network_styles.md").read_text(
    ).splitlines()
    start = readme.index("| template | style | connections | MBD | mean distance | params "
                         "| MFLOPs |")
    rows = []
    for line in readme[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    assert {(r[0], r[1]) for r in rows} >= {("dense", "per_block"), ("log", "v1"), ("log", "v2")}
    for name, style, connections, mbd, mean, params, mflops in rows:
        pattern = template_pattern(name, [16, 16, 16], style=style)
        model = PatternNet(pattern, ArchConfig(growth=12))
        stats = distance_stats(pattern)
        assert (int(connections), int(mbd)) == (pattern.connections, stats.mbd)
        assert float(mean) == pytest.approx(stats.mean, abs=5e-4)
        assert int(params.replace(",", "")) == count_params(model)
        assert float(mflops) == pytest.approx(count_flops(model, (3, 32, 32)) / 1e6, abs=0.05)


@pytest.mark.parametrize("template", ["dense", "log", "nearest_half", "chain"])
def test_a_block_extending_the_previous_concatenation_computes_the_same_nodes(template):
    """A layer that reads its predecessor's inputs and output reuses that concatenation; the
    nodes equal those of concatenating every read node afresh (values and gradients)."""
    pattern = template_pattern(template, [9])
    torch.manual_seed(0)
    block = PatternNet(pattern, ArchConfig(growth=3, input_shape=(2, 6, 6))).body.stages[0]
    x = torch.randn(2, block.layers[0].norm1.num_features, 6, 6, requires_grad=True)
    fresh = [x]
    for layer, reads in zip(block.layers, block.reads):
        fresh.append(layer([fresh[j] for j in reads]))
    (grad_fresh,) = torch.autograd.grad(sum(n.square().sum() for n in fresh[1:]), x)
    reused = block.nodes(x)
    (grad_reused,) = torch.autograd.grad(sum(n.square().sum() for n in reused[1:]), x)
    extends = sum(block.reads[i] == block.reads[i - 1] + (i,) for i in range(1, 9))
    assert extends >= (8 if template == "dense" else 0)
    for a, b in zip(fresh, reused):
        assert torch.equal(a, b)
    assert torch.allclose(grad_fresh, grad_reused, rtol=1e-4, atol=1e-4)
