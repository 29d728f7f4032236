"""Training plumbing shared by every network: the poly schedule, the atomic checkpoint, callbacks.

- :mod:`advcam_pl.training.schedule`: ``poly_factor``, ``poly_schedule`` (one rule, per-network
  decay interval);
- :mod:`advcam_pl.training.checkpoint`: ``save_checkpoint_atomic`` (temp name + rename + barrier);
- :mod:`advcam_pl.training.callbacks`: ``MeanShiftCallback`` (IRN), ``ProgressCheckpoint``,
  ``SegmentationWriter`` (DeepLab predictions → PNGs), ``instantiate_callbacks`` (``cfg.callbacks``).
"""
