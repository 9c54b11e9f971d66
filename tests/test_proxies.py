"""Zero-cost proxies: each against its definition on tiny networks (closed forms, direct
autograd), their reproducibility, and `skipnas bench proxies` on a fake benchmark."""
import json
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.cli import main
from nas.engine.model import build_model
from nas.engine.proxies import (
    JACOB_COV_K,
    PROXIES,
    grad_norm,
    jacob_cov,
    naswot,
    naswot_kernel,
    proxy_scores,
    snip,
    synflow,
)
from nas.engine.run_config import ArchConfig
from nas.engine.spec import make_spec
from nas.errors import UserError
from nas.results.proxies_report import SIGN_NOTE, combined_score, zscore
from search_spaces import template_pattern
from search_spaces.features import SCORES
from tests.test_bench import fake_bench


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread (and far faster on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_spec():
    arch = ArchConfig(growth=4, bottleneck=False, input_shape=(1, 16, 16), num_classes=10)
    return make_spec(template_pattern("log", [6]), arch)


def batch(n=8, shape=(1, 16, 16), classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def mlp(*widths, bn=False, seed=0):
    """Linear layers (no biases) with ReLUs between, optionally a BatchNorm1d before each."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        if i:
            layers += [nn.BatchNorm1d(a), nn.ReLU()] if bn else [nn.ReLU()]
        layers.append(nn.Linear(a, b, bias=False))
    return nn.Sequential(*layers)


def test_params_and_flops_are_the_spec_metrics():
    spec = tiny_spec()
    x, y = batch()
    scores = proxy_scores(spec, x, y)
    assert list(scores) == list(PROXIES)
    assert scores["params"] == spec.metrics["params"] > 0
    assert scores["flops"] == spec.metrics["flops"] > 0
    with pytest.raises(UserError, match="unknown zero-cost proxy 'nope'; known: snip, grad_norm"):
        PROXIES["nope"]


def test_params_and_flops_of_a_one_layer_chain_are_counted_by_hand():
    arch = ArchConfig(growth=4, bottleneck=False, stem_channels=3, input_shape=(1, 8, 8),
                      num_classes=2)
    spec = make_spec(template_pattern("chain", 1), arch)
    x, y = batch(shape=(1, 8, 8), classes=2)
    params = (3 * 1 * 9            # stem conv 1 -> 3, 3x3, no bias
              + 2 * 3              # the layer's BatchNorm over 3 channels
              + 4 * 3 * 9          # its conv 3 -> 4 (growth), 3x3, no bias
              + 2 * 4              # the final BatchNorm
              + 4 * 2 + 2)         # the classifier with its bias
    flops = 2 * 1 * 3 * 9 * 64 + 2 * 3 * 4 * 9 * 64 + 2 * 4 * 2  # multiply-adds x 2 on 8x8
    assert (PROXIES["params"](spec, None, x, y), PROXIES["flops"](spec, None, x, y)) == \
        (params, flops) == (159, 17296)


def test_synflow_of_a_linear_chain_is_its_closed_form_and_leaves_the_model_alone():
    # With weights |W| and an all-ones input, R = 1^T |W3||W2||W1| 1 (the ReLUs see positive
    # numbers only). R is linear in each layer's weights, so sum_w |dR/dw * w| = R per layer:
    # the score is (number of layers) * R.
    model = mlp(5, 4, 3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    w1, w2, w3 = (m.weight.detach().abs().double() for m in model if isinstance(m, nn.Linear))
    assert (model[0].weight < 0).any()  # the absolute values matter
    r = float(torch.ones(2, dtype=torch.float64) @ w3 @ w2 @ w1 @ torch.ones(5,
                                                                              dtype=torch.float64))
    x, _ = batch(6, (5,))
    assert synflow(model, x) == pytest.approx(3 * r, rel=1e-12)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Batch norm does not count: the same weights with a BatchNorm1d before each ReLU.
    with_bn = mlp(5, 4, 3, 2, bn=True)
    for a, b in zip([m for m in with_bn if isinstance(m, nn.Linear)],
                    [m for m in model if isinstance(m, nn.Linear)]):
        a.weight.data.copy_(b.weight.data)
    assert synflow(with_bn, x) == pytest.approx(3 * r, rel=1e-12)


def conv_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def test_snip_and_grad_norm_are_their_sums_over_conv_and_linear_weights():
    model = conv_net()
    x, y = batch(6, (1, 4, 4), classes=5)
    weights = [model[0].weight, model[4].weight]  # biases and batch norm are not scored
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    expect_snip = sum(float((g * w.detach()).abs().sum()) for g, w in zip(grads, weights))
    expect_norm = sum(float(torch.sqrt((g ** 2).sum())) for g in grads)
    assert snip(model, x, y) == pytest.approx(expect_snip, rel=1e-6)
    assert grad_norm(model, x, y) == pytest.approx(expect_norm, rel=1e-6)
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated


def test_naswot_kernel_counts_agreeing_relu_units():
    model = mlp(5, 16, 8, 3)  # 16 + 8 ReLU units
    x, _ = batch(6, (5,))
    kernel, units = naswot_kernel(model, x)
    assert units == 24 and np.array_equal(np.diag(kernel), np.full(6, 24.0))
    assert np.array_equal(kernel, kernel.T) and kernel.min() >= 0
    assert math.isfinite(naswot(model, x))
    # Two images with the same codes: two equal rows, a singular kernel.
    twice = torch.cat([x[:3], x[:1]])
    assert naswot(model, twice) == -math.inf


def test_naswot_sees_the_functional_relus_of_a_pattern_network():
    # Every ReLU of a pattern network (functional, in place, or a module) follows a batch norm,
    # so its units per image are the batch norms' outputs per image.
    spec = tiny_spec()
    torch.manual_seed(0)
    model = build_model(spec)
    sizes = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(lambda mod, inp, out: sizes.append(out[0].numel()))
    x, _ = batch(8)
    kernel, units = naswot_kernel(model, x)
    assert units == sum(sizes) > 0
    assert np.array_equal(np.diag(kernel), np.full(8, float(units)))


def test_jacob_cov_of_a_linear_layer_is_its_closed_form():
    # A linear layer's Jacobian of its summed output is W^T 1 for every image: all
    # correlations are 1, the eigenvalues n and 0 (n - 1 times).
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x, _ = batch(4, (5,))
    k = JACOB_COV_K
    expect = -(math.log(4 + k) + 1 / (4 + k) + 3 * (math.log(k) + 1 / k))
    assert jacob_cov(model, x) == pytest.approx(expect, rel=1e-9)
    # A constant Jacobian row has no correlations: NaN, not a number made up.
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert math.isnan(jacob_cov(model, x))


def test_every_proxy_is_finite_and_reproducible_from_its_seed():
    spec = tiny_spec()
    x, y = batch()
    state = torch.random.get_rng_state()
    first = proxy_scores(spec, x, y, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG untouched
    assert proxy_scores(spec, x, y, seed=0) == first
    assert all(math.isfinite(v) for v in first.values())
    other = proxy_scores(spec, x, y, seed=1)
    assert all(other[name] != first[name] for name in ("snip", "grad_norm", "synflow",
                                                         "jacob_cov"))


def test_the_combined_score_adds_z_scores_and_logs_synflow():
    distance = np.array([-1.0, -2.0, -3.0, math.nan])
    proxy = np.array([10.0, 1000.0, 100.0, 5.0])
    assert np.allclose(zscore(distance)[:3], [1.224744871, 0.0, -1.224744871])
    both = combined_score(distance, proxy, "synflow")
    assert math.isnan(both[3])
    assert np.allclose(both[:3], zscore(distance)[:3] + zscore(np.log(proxy))[:3])
    assert np.allclose(combined_score(distance, proxy, "snip")[:3],
                       zscore(distance)[:3] + zscore(proxy)[:3])


def test_bench_proxies_writes_every_score_and_its_correlations(tmp_path, monkeypatch, caplog):
    import nas.results.report

    folder = tmp_path / "bench"
    folder.mkdir()
    bench = fake_bench(folder, L=8)  # 6 patterns; accuracy falls with distance

    def no_chromium(*args, **kwargs):
        raise UserError("PNG export needs Chromium")

    monkeypatch.setattr(nas.results.report, "write_png", no_chromium)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert main(["bench", "proxies", str(folder), "--batch", "8",
                     "--resamples", "20", "--device", "cpu", "--out", str(out), "-q"]) == 0
    assert "no proxies.png" in caplog.text
    result = json.loads((out / "proxies.json").read_text())
    names = [*SCORES, *PROXIES]
    best = result["combined_from"]
    assert best in PROXIES
    assert [r["score"] for r in result["scores"]] == [*names, f"-mean_distance+{best}"]
    assert result["patterns"] == len(bench.entries) == 6 and result["batch"] == 8
    for row in result["scores"]:
        for method in ("spearman", "kendall"):
            assert set(row[method]) == {"r", "ci_low", "ci_high", "p_value"}
        assert row["seconds"] >= 0 and row["n"] <= 6
    by_score = {r["score"]: r for r in result["scores"]}
    # Positive r: a higher score (a shorter mean distance) goes with higher accuracy.
    assert by_score["-mean_distance"]["spearman"]["r"] == pytest.approx(1.0)
    for p in result["per_pattern"]:
        assert set(p["scores"]) == {*names, f"-mean_distance+{best}"} and set(p["seconds"]) == \
            set(names)
        assert p["accuracy"] == pytest.approx(bench.entries[p["hash"]].accuracy)
    assert SIGN_NOTE in (out / "proxies.md").read_text()
    assert "-mean_distance+" in (out / "proxies.html").read_text()
    # A batch larger than the training split is one clear error.
    assert main(["bench", "proxies", str(folder), "--batch", "100000", "-q",
                 "--out", str(out)]) == 2
