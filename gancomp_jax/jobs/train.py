"""Training job: ``python -m gancomp_jax.main --config experiments/train_*.py --workdir DIR``."""

from gancomp_jax.train.trainer import train


def run(config, workdir: str):
    return train(config, workdir)
