"""lenet_exp's SLURM launcher for Hydra (launcher.py): submitit's, with sbatch's refusals said in one sentence."""
