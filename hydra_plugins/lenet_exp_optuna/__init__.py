"""lenet_exp's Optuna sweeper for Hydra (sweeper.py) and the study it runs (the modules whose names begin with
``_``, which Hydra's plugin scan does not import); Hydra finds plugins only in the hydra_plugins namespace."""
