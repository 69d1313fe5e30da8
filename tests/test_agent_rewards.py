"""The agent's reward terms against hand computations (eager ops, small sizes, CPU)."""
import pytest
import torch

import sgfast.reference

NEEDED = ("composite", "aligned_crop", "focus_reward")
pytestmark = pytest.mark.skipif(not all(hasattr(sgfast.reference, f) for f in NEEDED),
                                reason="sgfast.reference lacks the agent's ops")


def _reward_model(focus_norm, size):
    from sgfast.backend import get_ops
    from sgfast.agent.rewards import RewardModel

    torch.manual_seed(0)
    return RewardModel("sg", get_ops("eager"), size, width=4, focus_norm=focus_norm)


def _targets(b, size, g):
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.5], [0.3, 0.1, 0.4, 0.7], [0.0, 0.0, 1.0, 1.0]])[:b]
    return {"image": torch.rand(b, 3, size, size, generator=g), "mask": torch.rand(b, 1, size, size, generator=g),
            "gbp": torch.rand(b, 1, size, size, generator=g) * (torch.rand(b, 1, size, size, generator=g) < 0.3),
            "boxes": boxes}


@pytest.mark.parametrize("focus_norm", ["sum", "frobenius"])
def test_focus_term_matches_eq_14_15_by_hand(focus_norm):
    """r_focus = L(C_t) - L(C_t+1), L = ||Z_G (Z_I - Z_C)||_F^2 / N, N = sum Z_G or ||Z_G||_F."""
    from sgfast.reference import aligned_crop

    size, g = 16, torch.Generator().manual_seed(1)
    t = _targets(3, size, g)
    c0, c1 = torch.rand(3, 3, size, size, generator=g), torch.rand(3, 3, size, size, generator=g)
    got = _reward_model(focus_norm, size)(c0, c1, t)["r_focus"]
    zi, z0, z1, zg = (aligned_crop(x, t["boxes"], size) for x in (t["image"], c0, c1, t["gbp"]))
    norm = zg.flatten(1).sum(1) if focus_norm == "sum" else zg.flatten(1).norm(dim=1)

    def dist(zc):
        return (zg * (zi - zc)).pow(2).flatten(1).sum(1) / norm

    assert got.shape == (3, 1)
    assert torch.allclose(got.flatten(), dist(z0) - dist(z1), rtol=1e-4, atol=1e-6)


def test_focus_sum_norm_is_invariant_to_the_extent_of_g():
    """Paper Sec. 4.3: normalising by the map's mass makes L_G independent of how much of the crop G
    covers; the Frobenius norm of Eq. 14 grows with the square root of G's area."""
    size = 16
    image = torch.full((2, 3, size, size), 0.5)
    black = torch.zeros_like(image)
    gbp = torch.zeros(2, 1, size, size)
    gbp[0, :, 2:4, 2:4] = 1  # 4 pixels
    gbp[1, :, 2:10, 2:10] = 1  # 64 pixels
    t = {"image": image, "mask": torch.ones(2, 1, size, size), "gbp": gbp, "boxes": torch.tensor([[0.0, 0, 1, 1]] * 2)}
    by_sum = _reward_model("sum", size)(black, image, t)["r_focus"].flatten()
    by_fro = _reward_model("frobenius", size)(black, image, t)["r_focus"].flatten()
    full = 3 * 0.5 ** 2  # the per-pixel squared error summed over channels, black -> target
    assert torch.allclose(by_sum, torch.tensor([full, full]), rtol=1e-4)
    assert torch.allclose(by_fro, torch.tensor([full * 2, full * 8]), rtol=1e-4)


def test_empty_gbp_gives_zero_focus_reward():
    size, g = 16, torch.Generator().manual_seed(2)
    t = _targets(2, size, g)
    t["gbp"] = torch.zeros_like(t["gbp"])
    c0, c1 = torch.rand(2, 3, size, size, generator=g), torch.rand(2, 3, size, size, generator=g)
    out = _reward_model("sum", size)(c0, c1, t)["r_focus"]
    assert torch.isfinite(out).all() and torch.equal(out, torch.zeros(2, 1))


def test_unknown_focus_norm_is_refused():
    with pytest.raises(ValueError, match="focus_norm"):
        _reward_model("l1", 16)
