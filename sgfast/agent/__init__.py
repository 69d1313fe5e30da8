"""The painting agent: model-based DDPG with bi-level strokes, alignment and focus reward.

One concern per module: `config` (named configurations), `data` (targets with S, boxes and G by
index), `prepared_source` (reading a `sgfast prepare` file), `networks` (actor, critic,
discriminator), `env` (batched painting environment), `rewards` (WGAN-GP discriminators and the
reward terms), `replay` (device replay memory), `ddpg` (the model-based update), `distributed`
(gradient all-reduce), `export` (actor weights for painting). The fused or eager ops come from
sgfast.backend.
The command line entry point is `train/agent.py` (`sgfast train-agent`).
"""
