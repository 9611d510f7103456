"""The pieces every model's training step is made of, each with its own tests.

``lr_schedule`` (warm-up, then a constant rate or a cosine decay), ``step_guard`` (skip a non-finite
optimizer step on every DDP rank; clip with the same gradient norm), ``running_means`` and ``term_log``
(loss terms as step values and exact epoch means). ``GenerativeModule`` composes them; a family with
its own training step (VQ-GAN) uses the same pieces through their public methods.
"""
