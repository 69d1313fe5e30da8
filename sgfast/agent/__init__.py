"""The painting agent: model-based DDPG with bi-level strokes, alignment and focus reward.

One concern per module: `config` (named configurations) (the fused or eager ops: sgfast.backend),
`data` (targets with S, boxes and G by index), `networks` (actor, critic, discriminator), `env`
(batched painting environment), `rewards` (WGAN-GP discriminators and the reward terms), `replay`
(device replay memory), `ddpg` (the model-based update), `distributed` (gradient all-reduce).
The command line entry point is `train/agent.py` (`sgfast train-agent`).
"""
