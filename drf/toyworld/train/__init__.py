"""Training scripts for the shipped toy-world models: a Wan VAE, a Wan text-to-video model and a Qwen2-VL critic."""
