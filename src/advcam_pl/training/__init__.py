"""Training plumbing shared by every network: the poly schedule, the atomic checkpoint, callbacks.

- :mod:`advcam_pl.training.schedule`: ``poly_factor``, ``poly_schedule`` (one rule, per-network
  decay interval);
- :mod:`advcam_pl.training.checkpoint`: ``save_checkpoint_atomic`` (temp name + rename + barrier),
  ``load_checkpoint_file`` / ``load_trained`` (``weights_only=True`` with an allow-list, architecture and
  finiteness checks), ``progress_path`` / ``resume_checkpoint`` (where a fit resumes from);
- :mod:`advcam_pl.training.callbacks`: ``MeanShiftCallback`` (IRN), ``ProgressCheckpoint`` (resumable
  state every epoch and n steps; stops after the batch on SIGTERM), ``FiniteLossGuard`` (NaN loss),
  ``SegmentationWriter`` (DeepLab predictions → PNGs).
"""
