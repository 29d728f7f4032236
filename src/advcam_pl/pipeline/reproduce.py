"""Reproduce the paper's VOC 2012 results, one skip-aware command per result.

    python -m advcam_pl.pipeline.reproduce --voc-root /data/VOCdevkit/VOC2012 [hydra overrides...]
    python -m advcam_pl.pipeline.reproduce --experiment reproduce_semi --voc-root ...
    python -m advcam_pl.pipeline.reproduce --voc-root ... --status     # which stages are done

Composes ``conf/config.yaml`` with the experiment and the overrides, checks the VOC tree, then runs
the experiment's stages:

- ``reproduce_weak`` (``make reproduce-weak``, the default): ResNet-50 CAM → AdvCAM → IRN → DeepLab-v2
  ResNet-101, i.e. train_cam → make_cam → eval_cam → make_ir_label → train_irn → make_sem_seg →
  eval_sem_seg → train_seg → eval_seg;
- ``reproduce_semi`` (``make reproduce-semi``): the same chain as far as eval_sem_seg, then CCT on the
  pseudo masks: train_semi → eval_semi.

Outputs go to a fixed ``paths.work_dir`` (default ``outputs/reproduce_weak`` for both, so the stages
they share run once) and a stage whose outputs are complete is skipped (``skip_done: true``), so the
same command continues a killed run. Prints the paper-vs-ours table of the experiment
(:data:`SUMMARIES`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

import advcam_pl.pipeline as pipeline
from advcam_pl.config import compose_config
from advcam_pl.pipeline.report import Table, paper_summary, paper_table, semi_paper_summary, semi_paper_table
from advcam_pl.viz.stages import log_summary

log = logging.getLogger(__name__)


# experiment → its summary table (the paper's numbers beside ours)
SUMMARIES: dict[str, Callable[[DictConfig], str]] = {"reproduce_weak": paper_table, "reproduce_semi": semi_paper_table}
# the same tables' rows, for the loggers (a W&B table)
SUMMARY_TABLES: dict[str, Callable[[DictConfig], Table]] = {"reproduce_weak": paper_summary,
                                                            "reproduce_semi": semi_paper_summary}


def compose_reproduction(voc_root: str | Path, overrides: Sequence[str] = (),
                         experiment: str = "reproduce_weak") -> DictConfig:
    """The root config + ``experiment=<experiment>`` + ``data.root=voc_root`` + ``overrides``."""
    root = Path(voc_root).expanduser().resolve()
    return compose_config([f"experiment={experiment}", f"data.root={root}", *overrides])


def check_voc_root(cfg: DictConfig) -> list[str]:
    """Raise :class:`~advcam_pl.data.voc.VOCLayoutError` (naming the missing folder or list) unless
    ``cfg.data.root`` holds every split the chain reads; returns warnings (a missing test list only
    disables the test-server export)."""
    from advcam_pl.data.voc import LIST_DIR, VOCReader

    root = Path(cfg.data.root)
    splits = dict.fromkeys([cfg.data.train_list, cfg.data.val_list, cfg.data.infer_list, cfg.data.eval_list,
                            cfg.semi.data.labelled_list, cfg.semi.data.weak_pool_list])
    for split in splits:
        VOCReader(root, split)  # checks the folders this split needs and reads its list
    warnings = []
    test_list = cfg.data.get("test_list")
    if test_list and not (root / LIST_DIR / f"{test_list}.txt").is_file():
        warnings.append(f"{root / LIST_DIR / f'{test_list}.txt'} not found: eval_seg / eval_semi will skip "
                        "the VOC test-server export (merge the VOC2012 test images and list to enable it)")
    return warnings


def stage_status(cfg: DictConfig) -> list[tuple[str, bool]]:
    """``[(stage, outputs complete?), ...]`` for ``cfg.stages``."""
    return [(name, bool(pipeline.stage_module(name).is_done(cfg))) for name in pipeline.stage_names(cfg.stages)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m advcam_pl.pipeline.reproduce",
        description="Reproduce AdvCAM's weakly (reproduce_weak) or semi-supervised (reproduce_semi) VOC 2012 "
                    "result (skip-aware; re-run to resume).")
    parser.add_argument("--experiment", choices=sorted(SUMMARIES), default="reproduce_weak",
                        help="which result (conf/experiment/<name>.yaml); default: %(default)s")
    parser.add_argument("--voc-root", required=True,
                        help="the VOC2012 folder (JPEGImages, SegmentationClass, SegmentationClassAug, "
                             "ImageSets/Segmentation/{train_aug,train,val[,test]}.txt)")
    parser.add_argument("--status", action="store_true", help="print which stages are complete and exit")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer=ddp paths.work_dir=...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s %(levelname)s] %(message)s")

    from advcam_pl.data.voc import VOCLayoutError

    cfg = compose_reproduction(args.voc_root, args.overrides, args.experiment)
    try:
        warnings = check_voc_root(cfg)
    except VOCLayoutError as err:
        print(f"reproduce: {args.voc_root} is not a usable VOC2012 tree.\n{err}", file=sys.stderr)
        return 2
    for warning in warnings:
        log.warning(warning)
    log.info("reproduce: work dir %s, stages %s", Path(cfg.paths.work_dir).resolve(), list(cfg.stages))
    if args.status:
        for name, done in stage_status(cfg):
            print(f"{name:<14} {'done' if done else 'to run'}")
        return 0
    pipeline.run_pipeline(cfg)
    print(SUMMARIES[args.experiment](cfg))
    log_summary(cfg, args.experiment, SUMMARY_TABLES[args.experiment](cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
