"""Model builder: shapes, DenseNet-BC-100 size, and that layers read only their pattern inputs."""
import pytest
import torch

from nas.engine.configs import ArchConfig
from nas.engine.model import PatternNet, build_model, count_flops, count_params
from nas.engine.spec import make_spec
from nas.errors import UserError
from search_spaces import TEMPLATES, Block, Pattern, template_pattern


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


def test_layers_read_only_their_inputs():
    """Gradient test: each node's output depends on exactly the nodes it reaches in the DAG."""
    pattern = Pattern([Block([[0], [0], [1], [1, 3], [0, 2, 4]])])  # node 2 unread by 3, 4
    arch = ArchConfig(growth=3, bottleneck=True, input_shape=(2, 6, 6), num_classes=2)
    model = PatternNet(pattern, arch).eval()
    block = model.stages[0]
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


def test_memory_efficient_matches_plain():
    pattern = template_pattern("log", [6, 6])
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
