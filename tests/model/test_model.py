import copy

import numpy as np
import pytest
import timm
import torch

from effvit_nas.arch.config import PRESETS, ArchConfig
from effvit_nas.arch.space import load_space
from effvit_nas.model.cost import count_params, model_cost
from effvit_nas.model.deploy import trace_for_inference
from effvit_nas.model.efficientvit import EfficientViT, build_model, create_model
from effvit_nas.model.timm_compat import config_from_timm, create_timm_model, from_timm, timm_kwargs
from tests.support import randomize_

BRIEF_PARAMS = {"M0": 2_349_436, "M1": 2_980_560, "M2": 4_187_554, "M3": 6_900_722, "M4": 8_804_228, "M5": 12_473_772}
BRIEF_MACS_M = {"M0": 79, "M1": 167, "M2": 201, "M3": 263, "M4": 299, "M5": 522}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_params_and_macs(name):
    cost = model_cost(PRESETS[name])
    assert cost.params == BRIEF_PARAMS[name]
    assert abs(cost.macs / 1e6 - BRIEF_MACS_M[name]) / BRIEF_MACS_M[name] < 0.01


@pytest.mark.parametrize("name", list(PRESETS))
def test_parity_with_timm_presets(name):
    theirs = randomize_(timm.create_model(f"efficientvit_{name.lower()}"), seed=1).eval()
    ours = from_timm(theirs)
    assert isinstance(ours, EfficientViT) and not ours.training
    assert config_from_timm(theirs).short_hash() == PRESETS[name].short_hash()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = theirs(x)
        out = ours(x)
    assert ref.abs().max() > 0.1  # the check is about a non-trivial function
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def timm_expressible_samples(n: int, seed: int) -> list[ArchConfig]:
    space = load_space("efficientvit")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        c = space.sample(rng)
        out.append(c.replace(v_ratios=(1.0,) * 3, ffn_ratios=(2.0,) * 3, num_classes=10, img_size=int(rng.choice([128, 160, 224]))))
    return out


@pytest.mark.parametrize("config", timm_expressible_samples(6, seed=3), ids=lambda c: c.short_hash())
def test_parity_with_timm_random_configs(config):
    assert timm_kwargs(config) is not None
    theirs = randomize_(create_timm_model(config), seed=2).eval()
    ours = from_timm(theirs)
    assert ours.config.same_architecture(config)
    assert count_params(ours) == count_params(theirs)
    x = torch.randn(2, 3, config.img_size, config.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=0)


def test_non_timm_configs_are_reported_as_such():
    c = PRESETS["M0"].replace(v_ratios=(1.0, 0.5, 1.0))
    assert timm_kwargs(c) is None
    assert timm_kwargs(PRESETS["M0"].replace(ffn_ratios=(2.0, 2.0, 3.0))) is None


def deploy_configs() -> list[ArchConfig]:
    space = load_space("efficientvit")
    rng = np.random.default_rng(7)
    samples = [space.sample(rng).replace(num_classes=10, img_size=int(rng.choice([96, 128, 160]))) for _ in range(4)]
    return [PRESETS["M0"], PRESETS["M5"], *samples]


@pytest.mark.parametrize("config", deploy_configs(), ids=lambda c: c.short_hash())
def test_deploy_matches_unfused(config):
    model = randomize_(build_model(config), seed=3).eval()
    x = torch.randn(2, 3, config.img_size, config.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        fused = copy.deepcopy(model).deploy()
        out = fused(x)
        out_traced = trace_for_inference(fused, x, optimize=False)(x)
        out_optimized = trace_for_inference(fused, x)(x)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in fused.modules())
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(out_traced, ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(out_optimized, ref, atol=1e-4, rtol=0)


def test_windows_pad_and_attend_globally_when_small():
    # 14x14 stage with window 5 pads to 15 (9 windows); a 4x4 stage with window 7 is global.
    c = PRESETS["M0"].replace(windows=(5, 7, 7))
    model = build_model(c)
    lwa = model.stages[0].blocks[0].mixer.m
    assert lwa.window == 5 and lwa.attn.attention_biases.shape == (4, 25)
    assert model.stages[2].blocks[0].mixer.m.window == 4
    y = model.eval()(torch.randn(1, 3, 224, 224))
    assert y.shape == (1, 1000)


def test_value_ratio_changes_widths_and_runs():
    c = PRESETS["M0"].replace(v_ratios=(0.5, 1.5, 1.0))
    model = build_model(c)
    attn = model.stages[1].blocks[0].mixer.m.attn
    assert attn.val_dim == 48 and attn.split_dim == 32
    assert model.stages[0].blocks[0].mixer.m.attn.val_dim == 8
    loss = model(torch.randn(2, 3, 224, 224)).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_any_input_size_builds_consistently():
    for size in (64, 100, 192, 256):
        model = build_model(PRESETS["M1"], img_size=size).eval()
        assert model(torch.randn(1, 3, size, size)).shape == (1, 1000)


@torch.no_grad()
def test_attention_bias_cache_never_goes_stale():
    torch.manual_seed(0)
    model = randomize_(create_model("M0"), seed=4).eval()
    x = torch.randn(1, 3, 224, 224)
    first = model(x)
    assert torch.equal(model(x), first)  # served from the cache

    # load_state_dict writes the same tensors in place
    other = randomize_(create_model("M0"), seed=5).eval()
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(model(x), other(x), atol=0, rtol=0)

    # train/eval switch with an in-place update in between (like an optimizer step)
    model.train()
    for n, p in model.named_parameters():
        if "attention_biases" in n:
            p.add_(1.0)
    model.eval()
    fresh = create_model("M0").eval()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x), fresh(x), atol=0, rtol=0)

    # .to() moves/casts the table: the cache must follow
    model64 = model.to(torch.float64)
    out64 = model64(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), fresh(x), atol=1e-4, rtol=0)


def test_create_model_registry():
    m = create_model("efficientvit_m2", num_classes=10, img_size=128)
    assert m.config.num_classes == 10 and m.config.img_size == 128
    assert m.no_weight_decay() and all("attention_biases" in n for n in m.no_weight_decay())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_deploy_fp16_matches_fp32():
    model = randomize_(build_model(PRESETS["M0"]), seed=6).eval().cuda()
    x = torch.randn(8, 3, 224, 224, device="cuda")
    with torch.no_grad():
        ref = model(x)
        fused = copy.deepcopy(model).deploy()
        torch.testing.assert_close(fused(x), ref, atol=1e-3, rtol=1e-3)
        with torch.autocast("cuda", dtype=torch.float16):
            half = fused(x)
    torch.testing.assert_close(half.float(), ref, atol=5e-2, rtol=5e-2)


def test_initialisation_draws_what_timm_draws_for_the_same_seed():
    """Our truncated normal (the classifier's init) against timm's: the same seed gives the same
    weights as before the model code stopped importing timm, so trained results reproduce."""
    from timm.layers import trunc_normal_

    # private: the initialiser itself is what must equal timm's, draw for draw
    from effvit_nas.model.efficientvit import _truncated_normal

    for std in (0.02, 1.0):
        ours, theirs = torch.empty(64, 48), torch.empty(64, 48)
        torch.manual_seed(0)
        _truncated_normal(ours, std)
        torch.manual_seed(0)
        trunc_normal_(theirs, std=std)
        assert torch.equal(ours, theirs)
