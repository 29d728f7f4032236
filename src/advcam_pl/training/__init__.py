"""Training plumbing shared by every network: the poly schedule, the atomic checkpoint, callbacks.

- :mod:`advcam_pl.training.schedule`: ``poly_factor``, ``poly_schedule`` (one rule, per-network
  decay interval);
- :mod:`advcam_pl.training.checkpoint`: ``save_checkpoint_atomic`` (temp name + rename + barrier),
  ``fit_resumable`` (resume from the progress checkpoint, save the final one);
- :mod:`advcam_pl.training.callbacks`: ``MeanShiftCallback`` (IRN), ``ProgressCheckpoint`` /
  ``progress_callbacks``, ``SegmentationWriter`` (DeepLab / CCT predictions → PNGs); the user's
  callbacks come from ``cfg.callbacks`` (:func:`advcam_pl.pipeline.common.training_callbacks`).
"""
