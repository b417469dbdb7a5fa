"""Training: gc.fit (train), optimizers (optim), checkpoints, validation.
"""
