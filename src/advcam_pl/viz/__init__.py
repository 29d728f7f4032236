"""Pictures for the dashboards: rendering (:mod:`~advcam_pl.viz.render`), sending them through a
stage's loggers (:mod:`~advcam_pl.viz.media`) and what each stage shows (:mod:`~advcam_pl.viz.stages`)."""

from advcam_pl.viz.media import MediaLogger

__all__ = ["MediaLogger"]
