"""The weight-sharing supernet: extraction is exact, subnets share the container's leading
channels / centre kernels / bias offsets, gradients reach only what a subnet uses, and BN
recalibration estimates a subnet's own statistics."""

import numpy as np
import pytest
import torch

from effvit_nas.arch.space import SearchSpace, load_space
from effvit_nas.errors import ConfigError
from effvit_nas.supernet.model import Supernet, container_config, largest_config, smallest_config
from tests.support import randomize_

# two resolutions and two windows: bias tables and inputs of several sizes
MULTI = {
    "name": "multi",
    "stages": 3,
    "heads": [1, 2, 4],
    "head_dims": [8, 16],
    "depths": [[1, 2], [1, 2], [1, 2]],
    "qk_dims": [8, 16],
    "v_ratios": [0.5, 1.0],
    "ffn_ratios": [1.0, 2.0],
    "windows": [[2, 4], [2], [2]],
    "kernels": [[5, 3, 3, 3], [3, 3, 3, 3], [5, 5, 5, 5]],
    "img_sizes": [48, 64],
    "num_classes": 10,
}


def _supernet(space: SearchSpace) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(space)
    randomize_(net.net)  # zero-initialised BN weights would close every residual branch
    return net


def _configs(space: SearchSpace, n: int):
    rng = np.random.default_rng(0)
    return [largest_config(space), smallest_config(space), *(space.sample(rng) for _ in range(n))]


@pytest.mark.parametrize(("space_name", "training"), [("efficientvit", False), ("multi", False), ("multi", True)])
def test_an_extracted_subnet_computes_what_the_supernet_computes_for_it(space_name, training):
    space = load_space(space_name) if space_name != "multi" else SearchSpace.from_dict(MULTI)
    net = _supernet(space).train(training)
    for config in _configs(space, 6 if space_name == "multi" else 3):
        x = torch.randn(3, 3, config.img_size, config.img_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = net.extract(config)(x)
            got = net(x, config)
        assert expected.abs().max() > 1e-3  # the residual branches are open: a real check
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_the_largest_subnet_is_the_container_and_keeps_its_weights():
    space = load_space("tiny")  # its largest kernel choice is the per-head maximum
    net = _supernet(space).eval()
    assert largest_config(space) == container_config(space)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x, largest_config(space)), net.net(x), rtol=0, atol=0)
    state = net.sub_state(largest_config(space))
    # every tensor of the largest subnet is the container's own storage (views), so its
    # training also updates the running BatchNorm statistics in place
    assert all(v.data_ptr() == net.net.state_dict()[k].data_ptr() for k, v in state.items())


def test_subnets_share_leading_channels_centre_kernels_and_bias_offsets():
    space = SearchSpace.from_dict(MULTI)
    net = _supernet(space)
    full = net.net.state_dict()
    config = space.config_from_params({**space.params_from_config(smallest_config(space)), "window_0": 2, "kernels": "3-3-3-3"})
    sub = net.sub_state(config)
    attn = "stages.0.blocks.0.mixer.m.attn."
    # Q/K/V rows: each a prefix of the container's Q, K and V (qk 8 of 16, v 4 of 16)
    qkv_full, qkv_sub = full[attn + "qkvs.0.conv.weight"], sub[attn + "qkvs.0.conv.weight"]
    assert torch.equal(qkv_sub[:8], qkv_full[:8, :8]) and torch.equal(qkv_sub[8:16], qkv_full[16:24, :8])
    assert torch.equal(qkv_sub[16:], qkv_full[32:36, :8])
    # depthwise Q kernel 3 of 5: the centre
    assert torch.equal(sub[attn + "dws.0.conv.weight"], full[attn + "dws.0.conv.weight"][:8, :, 1:4, 1:4])
    # window 2 inside the container's 4: same (dy, dx) offset, same bias
    bias_full, bias_sub = full[attn + "attention_biases"], sub[attn + "attention_biases"]
    for dy in range(2):
        for dx in range(2):
            assert torch.equal(bias_sub[:, dy * 2 + dx], bias_full[:1, dy * 4 + dx])


def test_gradients_reach_only_the_weights_a_subnet_uses():
    space = SearchSpace.from_dict(MULTI)
    net = _supernet(space).train()
    config = space.config_from_params({**space.params_from_config(largest_config(space)), "qk_dim_0": 8})
    net(torch.randn(4, 3, 64, 64), config).square().mean().backward()
    grad = net.net.stages[0].blocks[0].mixer.m.attn.qkvs[0].conv.weight.grad
    assert grad[:8].abs().sum() > 0 and grad[16:24].abs().sum() > 0  # Q and K rows it uses
    assert grad[8:16].abs().sum() == 0 and grad[24:32].abs().sum() == 0  # the Q and K rows it does not
    deeper = net.net.stages[0].blocks[1].mixer.m.attn.qkvs[0].conv.weight.grad
    assert deeper is not None and deeper.abs().sum() > 0  # depth 2: the second block trains
    shallow = space.config_from_params({**space.params_from_config(config), "depth_0": 1})
    net.zero_grad()
    net(torch.randn(4, 3, 64, 64), shallow).square().mean().backward()
    assert net.net.stages[0].blocks[1].mixer.m.attn.qkvs[0].conv.weight.grad is None


def test_a_config_outside_the_space_is_refused():
    space = load_space("tiny")
    net = Supernet(space)
    outside = largest_config(space).replace(widths=(256, 256, 256), heads=(4, 4, 4))
    with pytest.raises(ConfigError, match="not a point of the supernet's space 'tiny'"):
        net.extract(outside)


def test_bn_recalibration_estimates_the_data_statistics():
    from effvit_nas.data import normalize
    from effvit_nas.supernet.scoring import recalibrate_bn

    bn = torch.nn.BatchNorm2d(3)
    net = torch.nn.Sequential(bn)
    bn.running_mean.fill_(5.0)  # stale statistics, as a supernet's would be
    images = torch.randint(0, 256, (300, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    recalibrate_bn(net, images, batch=100)  # three equal batches: the average is the mean
    x = normalize(images)
    torch.testing.assert_close(bn.running_mean, x.mean((0, 2, 3)), rtol=0, atol=1e-5)
    assert not net.training and bn.momentum == 0.1  # eval mode, momentum restored
