"""lenet_exp's Optuna sweeper for Hydra (sweeper.py); Hydra finds plugins only in the hydra_plugins namespace."""
