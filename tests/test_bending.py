"""Bends inside the U-Net: point names, hooks equal functions, removal is bit-exact,
changing bends re-registers nothing."""
import pytest
import torch

import engine.bending as bending
from engine.bending import Bender, block_points, forward_hooks, unet_points
from engine.bends import Bend, apply_bend
from engine.operators import OPERATORS
from tests.test_operators import r_for


def unet_inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, model.latent_channels, 8, 8, generator=g)
    emb = model.encode_prompt(["a test"])
    return x, torch.tensor([500]), emb


def run_unet(model, inputs):
    with torch.no_grad():
        return model.unet(inputs[0], inputs[1], encoder_hidden_states=inputs[2]).sample


def hook_count(module):
    return sum(forward_hooks(module).values())


def test_points_are_in_forward_order(tiny):
    names = list(unet_points(tiny.unet))
    assert names[0] == "conv_in" and names[-1] == "conv_out"
    assert block_points(names) == ["conv_in", "down.0", "down.1", "down.2", "down.3", "mid",
                                   "up.0", "up.1", "up.2", "up.3", "conv_out"]  # SD's layout
    assert names.index("down.0.resnets.0") < names.index("down.0.attentions.0") < names.index("down.0.downsamplers.0") < names.index("down.0")
    assert names.index("mid.resnets.0") < names.index("mid.attentions.0") < names.index("mid.resnets.1") < names.index("mid")
    # the order is the order a forward pass actually reaches them
    seen = []
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: seen.append(n)) for n, m in unet_points(tiny.unet).items()]
    run_unet(tiny, unet_inputs(tiny))
    for h in handles:
        h.remove()
    assert seen == names


def test_integer_and_unknown_layers(tiny):
    bender = Bender(tiny.unet)
    try:
        assert bender.resolve_layer(0) == "conv_in"
        assert bender.resolve_layer(len(bender.names) - 1) == "conv_out"
        assert bender.resolve_layer("3") == bender.names[3]
        with pytest.raises(ValueError, match="out of range: this model has U-Net points 0..") as e:
            bender.bends = [Bend("add", layer=999)]
        with pytest.raises(ValueError, match="unknown layer 'middle'; valid layers: 'latent', .*mid") as e:
            bender.bends = [Bend("add", layer="middle")]
    finally:
        bender.remove()


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("point", ["mid", "down.0", "down.0.attentions.0", "up.1.resnets.0"])
def test_hook_equals_function(tiny, name, point):
    module = unet_points(tiny.unet)[point]
    raw, bent = [], []
    first = module.register_forward_hook(lambda m, a, o: raw.append(o[0] if isinstance(o, tuple) else getattr(o, "sample", o)))
    bend = Bend(name, layer=point, param=r_for(name))
    bender = Bender(tiny.unet, [bend])
    last = module.register_forward_hook(lambda m, a, o: bent.append(o[0] if isinstance(o, tuple) else getattr(o, "sample", o)))
    try:
        run_unet(tiny, unet_inputs(tiny))
    finally:
        first.remove(), last.remove(), bender.remove()
    torch.testing.assert_close(bent[0], apply_bend(raw[0], bend))


def test_point_bend_changes_output_and_removal_restores_bit_for_bit(tiny):
    inputs = unet_inputs(tiny)
    never_bent = run_unet(tiny, inputs)
    bender = Bender(tiny.unet)
    try:
        assert torch.equal(run_unet(tiny, inputs), never_bent)  # hooks alone change nothing
        bender.bends = [Bend("rotate", "mid", 1.2), Bend("dilate", "up.0", 3)]
        bent = run_unet(tiny, inputs)
        assert not torch.allclose(bent, never_bent)
        bender.bends = []
        assert torch.equal(run_unet(tiny, inputs), never_bent)
    finally:
        bender.remove()
    assert torch.equal(run_unet(tiny, inputs), never_bent)
    assert hook_count(tiny.unet) == 0


def test_changing_bends_registers_nothing(tiny):
    before = hook_count(tiny.unet)
    bender = Bender(tiny.unet, [Bend("add", "mid", 0.1)])
    try:
        attached = hook_count(tiny.unet)
        assert attached == before + bender.attached
        inputs = unet_inputs(tiny)
        outs = []
        for bends in ([Bend("add", "mid", 0.5)], [Bend("multiply", "mid", 2.0, "channels 0 1")],
                      [Bend("rotate", 3, 0.7)], [Bend("erode", "up.1", 2, "random 0.5")], []):
            bender.bends = bends
            outs.append(run_unet(tiny, inputs))
            assert hook_count(tiny.unet) == attached
        assert all(not torch.equal(a, b) for a, b in zip(outs, outs[1:]))
    finally:
        bender.remove()


def test_point_bends_respect_their_step(tiny):
    inputs = unet_inputs(tiny)
    bender = Bender(tiny.unet, [Bend("add", "mid", 1.0, step=2)])
    try:
        bender.step = 1
        off = run_unet(tiny, inputs)
        bender.step = 2
        on = run_unet(tiny, inputs)
    finally:
        bender.remove()
    assert torch.equal(off, run_unet(tiny, inputs))
    assert not torch.allclose(on, off)


def test_bends_print_readably(tiny):
    bender = Bender(tiny.unet, [Bend("rotate", 0, 0.5, opts={"plane": "R2"}), Bend("erode", "mid", 3, step=0)])
    try:
        assert str(bender) == ("1. rotate(plane=R2) r=0.5 @ conv_in step all\n"
                               "2. erode() r=3 @ mid step 0")
    finally:
        bender.remove()


def test_a_new_bender_replaces_the_previous_one_on_the_same_model(tiny):
    inputs = unet_inputs(tiny)
    clean = run_unet(tiny, inputs)
    first = Bender(tiny.unet, [Bend("multiply", "mid", 0.0)])
    hooks = hook_count(tiny.unet)
    second = Bender(tiny.unet)  # e.g. a new pipeline on the same model
    try:
        assert hook_count(tiny.unet) == hooks  # not doubled
        assert torch.equal(run_unet(tiny, inputs), clean)  # the first one's bends are gone
        assert first.attached == 0
        first.attach()  # the first pipeline runs again: its bends come back, still not doubled
        assert hook_count(tiny.unet) == hooks and second.attached == 0
        assert not torch.allclose(run_unet(tiny, inputs), clean)
    finally:
        first.remove()
        second.remove()
    assert hook_count(tiny.unet) == 0


def test_forward_hooks_names_each_hooked_module_and_counts_pre_hooks_too():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert forward_hooks(net) == {}
    a = net[0].register_forward_hook(lambda m, i, o: o)
    b = net[1].register_forward_pre_hook(lambda m, i: i)
    c = net.register_forward_hook(lambda m, i, o: o)
    assert dict(forward_hooks(net)) == {"": 1, "0": 1, "1": 1}
    for h in (a, b, c):
        h.remove()
    assert forward_hooks(net) == {}
