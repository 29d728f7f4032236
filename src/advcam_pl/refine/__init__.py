"""Seed refinement (IRN): dense CRF, IR labels, pair indexing, random walk.

- :mod:`advcam_pl.refine.crf`: ``crf_inference_label``, ``crf_inference_prob``, ``crf_seed_labels``,
  ``crf_seed_confusion``, ``write_label_pngs``, ``parallel_map`` (numpy + pydensecrf only, cheap to
  import in workers).
- :mod:`advcam_pl.refine.ir_label`: ``ir_label`` (confident fg / bg / ignore), ``write_ir_label``.
- :mod:`advcam_pl.refine.indexing`: ``PathIndex`` (pairs within a radius and their paths),
  ``edge_to_affinity``.
- :mod:`advcam_pl.refine.random_walk`: ``propagate_to_edge``, ``sem_seg_labels``.

Every function takes arrays (and output paths): reading the dataset and the CAM files is the
stages' job. Nothing is imported here, so a CRF worker process does not pay for importing torch.
"""
