"""Rewards from WGAN-GP discriminators (paper Eq. 5, 6, 12, 15, 19), every term [B, 1].

- r_bg: the global discriminator on whole images, D(cat[I, C_t+1]) - D(cat[I, C_t]) (Eq. 5 as the
  authors' code computes it: on the unmasked image; in baseline mode this is the only term).
- r_fg: the foreground discriminator on neurally aligned crops of the masked target and canvases,
  Z = aligned_crop(X, box, S, mask=S) (Eq. 12, crop of X * S as the authors' code).
- r_focus: L_G(C_t) - L_G(C_t+1) (Eq. 13-15) with L_G = ||Z_G * (Z_I - Z_C)||_F^2 / N_G. The op
  `focus_reward` divides by N_G = ||Z_G||_F, as Eq. 14 is typeset; the paper's text ("normalize ...
  using the total number of non-zero pixels", so that the scale is invariant to the extent of G)
  and the authors' code (sum of G) divide by the map's mass N_G = sum Z_G. `focus_norm="sum"`
  (default) rescales the op's result by ||Z_G||_F / sum Z_G: with ||Z_G||_F the term grows with the
  square root of G's area (a 50x spread of the episode's focus return over the synthetic birds,
  about 13x r_bg's weight on average at nu = 10), which drove the foreground strokes to full size.
- r = r_bg + eta * r_fg + nu * r_focus (Eq. 19; paper eta = 2, nu = 10).

Rewards use target copies of the discriminators (soft-updated with tau), as the baseline. The
discriminators train once per DDPG update on the sampled C_t+1 (real pair [I, I], fake [I, C]).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from sgfast.agent.networks import Discriminator

FOCUS_NORMS = ("sum", "frobenius")  # L_G divided by sum Z_G (paper text, authors) or ||Z_G||_F (Eq. 14)
EPS = 1e-8  # the focus op's epsilon in its denominator


def soft_update(target: nn.Module, source: nn.Module, tau: float):
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)
        for t, s in zip(target.buffers(), source.buffers()):
            if t.is_floating_point():
                t.lerp_(s, tau)
            else:
                t.copy_(s)


def frozen_copy(module: nn.Module) -> nn.Module:
    out = copy.deepcopy(module)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


class RewardModel(nn.Module):
    def __init__(self, mode, ops, size, width=16, eta=2.0, nu=10.0, lr=3e-4, gp_lambda=10.0, tau=0.001,
                 focus_norm="sum"):
        super().__init__()
        if focus_norm not in FOCUS_NORMS:
            raise ValueError(f"focus_norm must be one of {FOCUS_NORMS}, got {focus_norm!r}")
        self.mode, self.ops, self.size, self.focus_norm = mode, ops, size, focus_norm
        self.eta, self.nu, self.gp_lambda, self.tau = float(eta), float(nu), float(gp_lambda), float(tau)
        self.d_global = Discriminator(width)
        self.d_global_target = frozen_copy(self.d_global)
        self.opt_global = torch.optim.Adam(self.d_global.parameters(), lr=lr, betas=(0.5, 0.999))
        if mode == "sg":
            self.d_fg = Discriminator(width)
            self.d_fg_target = frozen_copy(self.d_fg)
            self.opt_fg = torch.optim.Adam(self.d_fg.parameters(), lr=lr, betas=(0.5, 0.999))

    def crop(self, x, targets):
        return self.ops.aligned_crop(x, targets["boxes"], self.size, targets["mask"])

    def focus_scale(self, targets):
        """[B]: factor turning the op's ||Z_G||_F normalisation into `focus_norm` (1 for frobenius)."""
        if self.focus_norm == "frobenius":
            return None
        zg = self.ops.aligned_crop(targets["gbp"], targets["boxes"], self.size).flatten(1)
        return (zg.norm(dim=1) + EPS) / (zg.sum(1) + EPS)

    def forward(self, canvas0, canvas1, targets) -> dict:
        """Reward terms of the step C_t -> C_t+1, each [B, 1], and their weighted sum `total`."""
        img = targets["image"]
        d = self.d_global_target
        r_bg = d(torch.cat([img, canvas1], 1)) - d(torch.cat([img, canvas0], 1))
        out = {"r_bg": r_bg}
        if self.mode == "sg":
            zi = targets["crop_image"] if "crop_image" in targets else self.crop(img, targets)
            z0, z1 = self.crop(canvas0, targets), self.crop(canvas1, targets)
            d = self.d_fg_target
            out["r_fg"] = d(torch.cat([zi, z1], 1)) - d(torch.cat([zi, z0], 1))
            focus = self.ops.focus_reward(img, canvas0, canvas1, targets["gbp"], targets["boxes"], self.size)
            scale = targets["focus_scale"] if "focus_scale" in targets else self.focus_scale(targets)
            if scale is not None:
                focus = focus * scale
            out["r_focus"] = focus.reshape(-1, 1)  # the op returns [B]: keep every term [B, 1]
            out["total"] = r_bg + self.eta * out["r_fg"] + self.nu * out["r_focus"]
        else:
            out["total"] = r_bg
        return out

    def _wgan_gp_step(self, d, opt, real, fake):
        """One WGAN-GP step: D(fake) - D(real) + lambda * (|grad D(mix)| - 1)^2."""
        b = real.shape[0]
        eps = torch.rand(b, 1, 1, 1, device=real.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(d(mix).sum(), mix, create_graph=True)
        gp = ((grad.reshape(b, -1).norm(dim=1) - 1) ** 2).mean()
        d_real, d_fake = d(real).mean(), d(fake).mean()
        loss = d_fake - d_real + self.gp_lambda * gp
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), (d_real - d_fake).detach()

    def discriminators(self):
        return [self.d_global] + ([self.d_fg] if self.mode == "sg" else [])

    def update(self, canvas, targets, all_reduce=None) -> dict:
        """Train the discriminators on (targets, canvas); returns their losses and W estimates."""
        img = targets["image"]
        canvas = canvas.detach()
        stats = {}
        steps = [("global", self.d_global, self.opt_global, torch.cat([img, img], 1), torch.cat([img, canvas], 1))]
        if self.mode == "sg":
            zi = targets["crop_image"] if "crop_image" in targets else self.crop(img, targets)
            zc = self.crop(canvas, targets)
            steps.append(("fg", self.d_fg, self.opt_fg, torch.cat([zi, zi], 1), torch.cat([zi, zc], 1)))
        for name, d, opt, real, fake in steps:
            loss, w = self._wgan_gp_step(d, opt, real, fake)
            if all_reduce is not None:
                all_reduce(d)
            opt.step()
            stats[f"d_{name}_loss"], stats[f"d_{name}_w"] = loss, w
        soft_update(self.d_global_target, self.d_global, self.tau)
        if self.mode == "sg":
            soft_update(self.d_fg_target, self.d_fg, self.tau)
        return stats

    def set_lr(self, lr):
        for opt in [self.opt_global] + ([self.opt_fg] if self.mode == "sg" else []):
            for g in opt.param_groups:
                g["lr"] = lr

    def checkpoint_state(self) -> dict:
        out = {"model": self.state_dict(), "opt_global": self.opt_global.state_dict()}
        if self.mode == "sg":
            out["opt_fg"] = self.opt_fg.state_dict()
        return out

    def load_checkpoint_state(self, state: dict):
        self.load_state_dict(state["model"])
        self.opt_global.load_state_dict(state["opt_global"])
        if self.mode == "sg":
            self.opt_fg.load_state_dict(state["opt_fg"])
