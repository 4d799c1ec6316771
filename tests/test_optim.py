"""The fused optimizers: chosen where torch supports them, and the same updates as the for-loop ones."""
import torch

from bertnas.training.optim import adam, adamw


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(50, 8, generator=g)), torch.nn.Parameter(torch.randn(8, generator=g))]


def _run(opt_factory, seed: int = 0) -> list[torch.Tensor]:
    params = _params(seed)
    opt = opt_factory(params)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return [p.detach() for p in params]


def test_adamw_is_fused_on_cpu_and_matches_the_for_loop_update():
    opt = adamw(_params(0), lr=1e-2, weight_decay=0.1)
    assert opt.defaults["fused"] is True
    fused = _run(lambda ps: adamw(ps, lr=1e-2, weight_decay=0.1))
    plain = _run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, foreach=False))
    moved = _params(0)
    for f, p, m in zip(fused, plain, moved):
        assert not torch.equal(f, m)  # the steps did something
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-6)


def test_adam_is_fused_and_matches():
    assert adam(_params(0), lr=1e-3).defaults["fused"] is True
    fused = _run(lambda ps: adam(ps, lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-3))
    plain = _run(lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-3, foreach=False))
    for f, p in zip(fused, plain):
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-6)


def test_frozen_parameters_are_left_out():
    params = _params(0)
    params[0].requires_grad_(False)
    opt = adamw(params, lr=1e-3)
    assert [p for group in opt.param_groups for p in group["params"]] == [params[1]]
