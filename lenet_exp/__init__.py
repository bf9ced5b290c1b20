"""lenet_exp: config-driven LeNet / Fashion-MNIST experiments (Lightning + Hydra)."""
