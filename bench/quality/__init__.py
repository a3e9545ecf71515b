"""`make bench-quality`: SVDiff against full fine-tuning and LoRA on held-out subjects of the base model's world.

Each method trains the same subjects with the same steps, batches, prompts, prior images, loss and optimizer
settings (only the trainable parameters and their learning rate differ), then samples prompts that put the subject
in new contexts; the attribute reader scores the samples. See `settings.py` for every choice and why.
"""
