"""lenet_exp: config-driven LeNet / Fashion-MNIST experiments (Lightning + Hydra).

From Python: ``lenet_exp.run(...)``, ``lenet_exp.sweep(...)`` and ``lenet_exp.load(...)`` (lenet_exp/api.py),
loaded on first use, so that ``import lenet_exp`` stays fast.
"""

from lenet_exp.runtime import resolvers as _resolvers  # noqa: F401  (registers ${if_multirun:...} for conf/)

__all__ = ["load", "run", "sweep"]


def __getattr__(name: str):
    if name in __all__:
        from lenet_exp import api

        return getattr(api, name)
    raise AttributeError(f"module 'lenet_exp' has no attribute {name!r}")
