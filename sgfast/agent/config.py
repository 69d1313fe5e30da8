"""Named agent configurations: `paper` (the authors' sizes, for GPUs), `tiny` (2 CPU cores),
`smoke` (seconds, tests).

Every field can be overridden from the command line (`--batch-size 32` etc.); the names follow the
baseline's train.py where there is one.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class AgentConfig:
    name: str = "paper"
    size: int = 128  # canvas side (must equal the renderer's output side)
    renderer: str = "paper"  # renderer config name used when no weights file is given
    # Networks: ResNet base width and blocks per stage (paper: ResNet-18 = 64, [2, 2, 2, 2]).
    width: int = 64
    blocks: tuple = (2, 2, 2, 2)
    disc_width: int = 16  # first discriminator conv width (baseline: 16 -> 32 -> 64 -> 128)
    # Strokes per step: (background, foreground) in sg mode; their sum in baseline mode.
    strokes_bg: int = 2
    strokes_fg: int = 3
    max_step: int = 40  # steps per episode
    env_batch: int = 96  # environments (images) painted in parallel per rank
    batch_size: int = 96  # transitions per DDPG update
    replay_episodes: int = 800  # replay capacity in episodes of one env (x max_step transitions)
    warmup: int = 400  # batched env steps before updates start
    episode_train_times: int = 10  # updates after each episode
    discount: float = 0.95 ** 5
    tau: float = 0.001
    noise: float = 0.0  # baseline default: no exploration noise
    # Penalty action_reg * sum(relu(|logit| - action_reg_margin)^2) on the actor's pre-sigmoid outputs
    # (action_reg 0 = the baseline's loss).
    # Adam moves the last layer by ~lr per update whatever the gradient's size, so a consistent early
    # push (the discriminators say "more paint") pins outputs at 0 or 1 within ~100 updates, where
    # the sigmoid passes back no gradient; the penalty keeps them where the reward can still move them.
    # With action_reg_margin m only the part of |logit| beyond m is penalised: a plain L2 (m = 0) also
    # pulls stroke coordinates towards the canvas centre and left the borders unpainted.
    action_reg: float = 0.0
    action_reg_margin: float = 0.0
    # Learning-rate schedule: (critic, actor) per phase, phase boundaries in batched env steps.
    lr_critic: tuple = (3e-4, 1e-4, 3e-5)
    lr_actor: tuple = (1e-3, 3e-4, 1e-4)
    lr_boundaries: tuple = (400_000, 800_000)
    lr_disc: float = 3e-4
    gp_lambda: float = 10.0
    eta: float = 2.0  # weight of r_fg (paper)
    nu: float = 10.0  # weight of r_focus (paper)
    focus_norm: str = "sum"  # L_G / sum Z_G (paper text, authors' code) or / ||Z_G||_F ("frobenius", Eq. 14)
    train_steps: int = 2_000_000  # batched env steps in total
    validate_interval: int = 50  # episodes between validations
    validate_episodes: int = 1  # validation episodes (each of env_batch held-out images)
    log_interval: int = 10  # updates between TensorBoard scalar writes
    checkpoint_interval: int = 50  # episodes between checkpoints

    @property
    def strokes(self) -> int:
        return self.strokes_bg + self.strokes_fg

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


CONFIGS = {
    "paper": AgentConfig(),
    # 64x64 canvas, narrow ResNet-10s, ~1 update/s on one CPU core. tau 0.01: with ~100x fewer updates
    # than the paper, target networks (and the reward discriminators) must follow faster.
    "tiny": AgentConfig(name="tiny", size=64, renderer="tiny", width=16, blocks=(1, 1, 1, 1),
                        disc_width=8, max_step=20, env_batch=16, batch_size=32, replay_episodes=200,
                        warmup=40, episode_train_times=5, lr_boundaries=(20_000, 40_000), tau=0.01,
                        train_steps=60_000, validate_interval=25, checkpoint_interval=25,
                        log_interval=10),
    # 32x32, minimal networks: an episode in well under a second, for tests.
    "smoke": AgentConfig(name="smoke", size=32, renderer="smoke", width=8, blocks=(1, 1, 1, 1),
                         disc_width=4, max_step=3, env_batch=4, batch_size=4, replay_episodes=10,
                         warmup=3, episode_train_times=2, lr_boundaries=(100, 200), train_steps=12,
                         validate_interval=2, checkpoint_interval=2, log_interval=1),
}


def get_config(name: str) -> AgentConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown agent config {name!r}; choose one of {sorted(CONFIGS)}")
    return dataclasses.replace(CONFIGS[name])
