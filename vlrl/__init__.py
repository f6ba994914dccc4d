"""vlrl: reinforcement learning for vision-language reasoning (the Kimi k1.5 recipe)."""
__version__ = "0.1.0"
