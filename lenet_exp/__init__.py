"""lenet_exp: config-driven LeNet / Fashion-MNIST experiments (Lightning + Hydra)."""

from lenet_exp.runtime import resolvers as _resolvers  # noqa: F401  (registers ${if_multirun:...} for conf/)
