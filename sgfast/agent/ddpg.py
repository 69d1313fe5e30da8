"""Model-based DDPG (the baseline's update_policy, with [B, 1] everywhere).

    critic target  y = r(s, a) + gamma * (1 - done) * [Q'(s', pi'(s')) + r(s', pi'(s'))]
    critic loss    (Q(s, a) + r(s, a) - y)^2        (the critic estimates a value net of r)
    actor loss     -mean(Q(s, pi(s)) + r(s, pi(s)))  through the frozen renderer and compositing

r is recomputed by rendering the action on C_t (model-based); it comes from the target
discriminators (and the focus term). The replayed C_t+1 trains the discriminators. Every reward
and Q tensor is [B, 1]: the authors' code adds a [B] reward to [B, 1] values, which broadcasts to
[B, B] and regresses the critic towards the batch-mean reward.
"""
from __future__ import annotations

import torch

from sgfast.strokes import STROKE_PARAMS
import torch.nn.functional as F

from sgfast.agent import distributed
from sgfast.agent.env import actor_channels, actor_input, coord_channels, critic_channels, critic_input
from sgfast.agent.networks import Actor, Critic
from sgfast.agent.rewards import RewardModel, frozen_copy, soft_update


def action_penalty(logits, margin=0.0):
    """sum over the action of relu(|logit| - margin)^2, batch mean: zero while every output lies in
    [sigmoid(-margin), sigmoid(margin)] (margin 3: [0.047, 0.953]), so it pulls nothing towards the
    canvas centre there, and grows quadratically in the sigmoid's flat tails."""
    return torch.relu(logits.abs() - margin).pow(2).sum(1).mean()


class DDPG:
    def __init__(self, cfg, mode, painter, ops, data, device):
        self.cfg, self.mode, self.painter, self.ops, self.data = cfg, mode, painter, ops, data
        self.device = torch.device(device)
        if getattr(ops, "name", None) == "fused" and self.device.type == "cuda":
            from sgfast.ops._ext import require_cuda_kernels

            require_cuda_kernels(self.device)  # a CPU-only build: say how to rebuild, before the first step fails
        k = cfg.strokes
        self.actor = Actor(actor_channels(mode), k, cfg.width, cfg.blocks).to(device)
        self.critic = Critic(critic_channels(mode), cfg.width, cfg.blocks).to(device)
        self.actor_target = frozen_copy(self.actor)
        self.critic_target = frozen_copy(self.critic)
        self.rewards = RewardModel(mode, ops, cfg.size, cfg.disc_width, cfg.eta, cfg.nu, cfg.lr_disc,
                                   cfg.gp_lambda, cfg.tau, cfg.focus_norm).to(device)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor[0])
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic[0])
        self.coords = coord_channels(cfg.size, device)
        # Every rank starts from rank 0's weights.
        for m in (self.actor, self.critic, self.actor_target, self.critic_target, self.rewards):
            distributed.broadcast_state(m)

    # -- acting -----------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, canvas_u8, targets, t: int, noise: float = 0.0, generator=None):
        """Action [B, K*13] for uint8 canvases at step t (actor in eval mode, as the baseline)."""
        self.actor.eval()
        b = canvas_u8.shape[0]
        t_frac = torch.full((b,), t / self.cfg.max_step, device=self.device)
        action = self.actor(actor_input(canvas_u8.float() / 255, targets, t_frac, self.coords, self.mode))
        self.actor.train()
        if noise > 0:  # per-env sigma ~ U(0, noise), the model-free baseline's exploration
            sigma = torch.rand(b, 1, generator=generator).to(self.device) * noise
            eps = torch.randn(action.shape, generator=generator).to(self.device)
            action = (action + sigma * eps).clamp(0, 1)
        return action

    # -- update -----------------------------------------------------------------------------
    def evaluate(self, canvas0, action, targets, step, target=False):
        """(Q + r, reward terms, Q) for action on C_t; all [B, 1]."""
        canvas1 = self.painter(canvas0, action, targets["mask"])
        terms = self.rewards(canvas0, canvas1, targets)
        q = self.value(canvas0, canvas1, targets, step, target)
        return q + terms["total"], terms, q

    def value(self, canvas0, canvas1, targets, step, target=False):
        """The critic's Q [B, 1] of the step C_t -> C_t+1 (step = t, [B]): its estimate of the
        discounted return of the steps after it."""
        t_frac = (step.float() + 1) / self.cfg.max_step
        critic = self.critic_target if target else self.critic
        return critic(critic_input(canvas0, canvas1, targets, t_frac, self.coords, self.mode))

    def set_lr(self, env_steps: int):
        phase = sum(env_steps >= b for b in self.cfg.lr_boundaries)
        for opt, lrs in ((self.opt_critic, self.cfg.lr_critic), (self.opt_actor, self.cfg.lr_actor)):
            for g in opt.param_groups:
                g["lr"] = lrs[min(phase, len(lrs) - 1)]
        return phase

    def update(self, batch: dict) -> dict:
        cfg = self.cfg
        targets = self.data.batch(batch["ids"], batch["flip"])
        if self.mode == "sg":
            targets["crop_image"] = self.rewards.crop(targets["image"], targets)
            targets["focus_scale"] = self.rewards.focus_scale(targets)  # constant per target: once per batch
        canvas0 = batch["canvas0"].float() / 255
        canvas1 = batch["canvas1"].float() / 255
        step = batch["step"]
        done = (step + 1 >= cfg.max_step).float().view(-1, 1)

        stats = self.rewards.update(canvas1, targets, distributed.average_gradients)

        with torch.no_grad():
            next_action = self.actor_target(
                actor_input(canvas1, targets, (step.float() + 1) / cfg.max_step, self.coords, self.mode))
            next_value, _, _ = self.evaluate(canvas1, next_action, targets, step + 1, target=True)
            y = cfg.discount * (1 - done) * next_value
        cur_value, terms, q = self.evaluate(canvas0, batch["action"], targets, step)
        y = y + terms["total"].detach()
        critic_loss = F.mse_loss(cur_value, y)
        self.opt_critic.zero_grad(set_to_none=True)
        critic_loss.backward()
        distributed.average_gradients(self.critic)
        self.opt_critic.step()

        # Actor: maximise Q(s, pi(s)) + r(s, pi(s)); the critic is frozen for this backward.
        self.critic.requires_grad_(False)
        try:
            logits = self.actor.logits(actor_input(canvas0, targets, step.float() / cfg.max_step, self.coords, self.mode))
            action = torch.sigmoid(logits)
            pre_value, _, _ = self.evaluate(canvas0, action, targets, step)
            actor_loss = -pre_value.mean()
            if cfg.action_reg > 0:  # keeps the sigmoid out of saturation (see AgentConfig.action_reg)
                actor_loss = actor_loss + cfg.action_reg * action_penalty(logits, cfg.action_reg_margin)
            self.opt_actor.zero_grad(set_to_none=True)
            actor_loss.backward()
        finally:
            self.critic.requires_grad_(True)
        distributed.average_gradients(self.actor)
        self.opt_actor.step()
        distributed.broadcast_state(self.actor, buffers_only=True)  # BN running statistics

        soft_update(self.actor_target, self.actor, cfg.tau)
        soft_update(self.critic_target, self.critic, cfg.tau)
        stats.update(critic_loss=critic_loss.detach(), actor_loss=actor_loss.detach(), q=q.detach().mean(),
                     actor_logit_rms=logits.detach().pow(2).mean().sqrt())
        # Share of the actor's outputs pinned at a bound (sigmoid saturated: no gradient comes back).
        pinned = ((action > 0.99) | (action < 0.01)).detach().float().view(action.shape[0], -1, STROKE_PARAMS)
        nb = cfg.strokes_bg if self.mode == "sg" else 0
        if nb:
            stats["action_pinned_bg"] = pinned[:, :nb].mean()
        if pinned.shape[1] > nb:
            stats["action_pinned_fg" if nb else "action_pinned"] = pinned[:, nb:].mean()
        for name, v in terms.items():
            stats[name] = v.detach().mean()
        self.last_shapes = {"q": tuple(q.shape), "value": tuple(cur_value.shape), "target": tuple(y.shape),
                            **{name: tuple(v.shape) for name, v in terms.items()}}
        return stats

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "actor_target": self.actor_target.state_dict(),
                "critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                "opt_actor": self.opt_actor.state_dict(), "opt_critic": self.opt_critic.state_dict(),
                "rewards": self.rewards.checkpoint_state()}

    def load_state_dict(self, state: dict):
        self.actor.load_state_dict(state["actor"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.opt_actor.load_state_dict(state["opt_actor"])
        self.opt_critic.load_state_dict(state["opt_critic"])
        self.rewards.load_checkpoint_state(state["rewards"])
