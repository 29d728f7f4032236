"""CCT's data: the labelled/weak split, the official augmentation, weak masks read from the weak
chain's folder, cycling labelled batches, one epoch = one pass over the weak list."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from advcam_pl.data.semi import CCTTrainTransform, SemiDataModule, check_disjoint, split_semi_ids
from advcam_pl.data.voc import VOCReader, read_id_list
from advcam_pl.io import palette_image

VOC_LISTS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "voc12_lists"
PSEUDO_CLASS = 20  # tvmonitor: not among the synthetic classes, so it can only come from the weak folder


@pytest.fixture(scope="module")
def pseudo_dir(synthetic_root, tmp_path_factory) -> Path:
    """One pseudo mask per train_aug id, all PSEUDO_CLASS (as the weak chain's sem_seg folder)."""
    folder = tmp_path_factory.mktemp("work") / "sem_seg_advcam"
    folder.mkdir()
    reader = VOCReader(synthetic_root, "train_aug")
    for image_id in reader.ids:
        height, width = reader.load_image(image_id).shape[:2]
        palette_image(np.full((height, width), PSEUDO_CLASS, np.uint8)).save(folder / f"{image_id}.png")
    return folder


def datamodule(root, weak_dir, **kwargs) -> SemiDataModule:
    args = dict(weak_label_dir=weak_dir, batch_size=3, weak_batch_size=2, crop_size=32, base_size=48)
    return SemiDataModule(root, **{**args, **kwargs})


def test_voc_split_sizes_are_1464_and_9118_disjoint_with_union_train_aug():
    if not VOC_LISTS.is_dir():
        pytest.skip(f"VOC id lists not found at {VOC_LISTS}")
    train, train_aug, val = (read_id_list(VOC_LISTS / f"{n}.txt") for n in ("train", "train_aug", "val"))
    labelled, weak = split_semi_ids(train, train_aug)
    assert (len(labelled), len(weak), len(val)) == (1464, 9118, 1449)
    check_disjoint({"labelled": labelled, "weak": weak, "val": val})
    assert sorted(labelled + weak) == sorted(train_aug)


def test_overlapping_or_repeated_ids_are_errors():
    with pytest.raises(ValueError, match="the weak and val splits share 1 ids .*'b'"):
        check_disjoint({"labelled": ["a"], "weak": ["b", "c"], "val": ["b"]})
    with pytest.raises(ValueError, match="labelled list repeats ids"):
        split_semi_ids(["a", "a"], ["a", "b"])


def test_synthetic_split_and_items(synthetic_root, pseudo_dir):
    dm = datamodule(synthetic_root, pseudo_dir)
    dm.setup("fit")
    assert len(dm.labelled_set) == 12 and len(dm.weak_set) == 12 and len(dm.val_set) == 8
    assert set(dm.labelled_set.ids) | set(dm.weak_set.ids) == set(VOCReader(synthetic_root, "train_aug").ids)
    weak = dm.weak_set[0]
    assert weak["image"].shape == (3, 32, 32) and weak["label"].dtype == torch.int64
    assert set(weak["label"].unique().tolist()) <= {PSEUDO_CLASS, 255} and (weak["label"] == PSEUDO_CLASS).any()
    labelled = [dm.labelled_set[i]["label"] for i in range(len(dm.labelled_set))]
    assert not any((lab == PSEUDO_CLASS).any() for lab in labelled)  # GT, even with weak labels on
    assert any(((lab > 0) & (lab < 255)).any() for lab in labelled)


def test_official_augmentation_long_side_crop_and_padding():
    transform = CCTTrainTransform()  # base 400 → long side U{200..800}, crop 320
    assert transform.long_range == (200, 800)
    rng = np.random.default_rng(0)
    img, mask = np.zeros((48, 64, 3), np.uint8), np.ones((48, 64), np.uint8)
    longs = [max(transform.resize(img, mask, rng)[0].shape[:2]) for _ in range(150)]
    assert min(longs) >= 200 and max(longs) <= 800 and min(longs) < 230 and max(longs) > 770
    small = CCTTrainTransform(base_size=200, scale_range=(1.0, 1.0), flip=False)  # long side 200 < 320
    image, label = small(img, mask, rng)
    assert image.shape == (3, 320, 320) and label.shape == (320, 320)
    # pad at the bottom/right only: the 200 × 150 image sits in the top-left corner
    assert (label[:150, :200] == 1).all() and (label[150:] == 255).all() and (label[:, 200:] == 255).all()
    assert (image[:, 150:] == 0).all()  # the mean colour, after normalisation


def test_weak_mask_is_cropped_and_flipped_with_its_image():
    # four vertical stripes: class k where the red channel is 40·k
    mask = np.repeat(np.repeat(np.arange(1, 5, dtype=np.uint8), 25)[None], 60, axis=0)
    img = np.zeros((60, 100, 3), np.uint8)
    img[..., 0] = 40 * mask
    transform = CCTTrainTransform(crop_size=48, base_size=100, scale_range=(0.9, 1.2))
    mean, std = 0.485, 0.229
    orders = set()
    for seed in range(20):
        image, label = transform(img, mask, np.random.default_rng(seed))
        red = (image[0] * std + mean) * 255
        valid = label != 255
        assert (torch.round(red / 40) == label)[valid].float().mean() > 0.9, seed  # bicubic edges aside
        stripes = label[0][valid[0]].unique_consecutive().tolist()  # the stripe order along the top row
        if len(stripes) > 1:
            orders.add("left-to-right" if stripes == sorted(stripes) else "mirrored")
            assert stripes in (sorted(stripes), sorted(stripes, reverse=True)), seed
    assert orders == {"left-to-right", "mirrored"}


def test_missing_pseudo_mask_is_named_or_skipped(synthetic_root, pseudo_dir, tmp_path, caplog):
    partial = tmp_path / "sem_seg_partial"
    partial.mkdir()
    weak_ids = [i for i in VOCReader(synthetic_root, "train_aug").ids
                if i not in set(VOCReader(synthetic_root, "train").ids)]  # fmt: skip
    for image_id in weak_ids[1:]:
        (partial / f"{image_id}.png").write_bytes((pseudo_dir / f"{image_id}.png").read_bytes())
    with pytest.raises(FileNotFoundError) as err:
        datamodule(synthetic_root, partial).setup("fit")
    assert f"{weak_ids[0]}.png is missing" in str(err.value) and str(partial) in str(err.value)
    with caplog.at_level(logging.WARNING):
        dm = datamodule(synthetic_root, partial, skip_bad=True)
        dm.setup("fit")
    assert len(dm.weak_set) == 11 and weak_ids[0] in caplog.text
    with pytest.raises(FileNotFoundError, match="make_sem_seg"):
        datamodule(synthetic_root, tmp_path / "nowhere").setup("fit")
    with pytest.raises(ValueError, match="needs weak_label_dir"):
        SemiDataModule(synthetic_root, weak_labels="ir_label")


def test_without_weak_labels_the_weak_images_carry_only_ignore(synthetic_root):
    dm = datamodule(synthetic_root, None, weak_labels="none")
    dm.setup("fit")
    assert (dm.weak_set[0]["label"] == 255).all()


def epoch_batches(dm):
    loader = dm.train_dataloader()
    return [batch for batch, _, _ in loader], loader


@pytest.mark.parametrize("cache", [False, True])
def test_an_epoch_is_one_pass_over_the_weak_list_with_labelled_batches_cycling(synthetic_root, pseudo_dir, cache):
    torch.manual_seed(0)
    dm = datamodule(synthetic_root, pseudo_dir, cache_labelled_pass=cache)
    dm.setup("fit")
    batches, loader = epoch_batches(dm)
    assert len(batches) == len(loader) == 6  # 12 weak images / 2
    assert sorted(i for b in batches for i in b["weak"]["id"]) == sorted(dm.weak_set.ids)
    first_pass = [i for b in batches[:4] for i in b["labelled"]["id"]]  # 12 labelled / 3 = 4 batches
    assert sorted(first_pass) == sorted(dm.labelled_set.ids)
    replay = [torch.equal(a["labelled"]["image"], b["labelled"]["image"]) for a, b in zip(batches[:2], batches[4:])]
    assert all(replay) if cache else not any(replay)


def test_a_last_batch_of_one_image_is_dropped(synthetic_root, pseudo_dir):
    dm = datamodule(synthetic_root, pseudo_dir, weak_batch_size=11)  # 12 = 11 + 1
    dm.setup("fit")
    batches, _ = epoch_batches(dm)
    assert [len(b["weak"]["id"]) for b in batches] == [11]


def test_fit_runs_one_weak_pass_per_epoch_with_two_encoder_passes_per_step(synthetic_root, pseudo_dir):
    from advcam_pl.models.cct import CCT

    class EpochEnds(pl.Callback):
        steps: list[int] = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.steps.append(trainer.global_step)

    pl.seed_everything(0)
    model = CCT(depth=18, pretrained=None, aux_counts={"vat": 1, "feature_noise": 1})
    dm = datamodule(synthetic_root, pseudo_dir, batch_size=4, weak_batch_size=4, val_list=None)
    epoch_ends = EpochEnds()
    trainer = pl.Trainer(max_epochs=10, max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[epoch_ends])  # fmt: skip
    trainer.fit(model, dm)
    assert trainer.num_training_batches == 3 and epoch_ends.steps[0] == 3 and trainer.global_step == 4
    assert model.rampup_steps == 3  # int(0.1 · 10 epochs) · 3 iterations
    assert model.net.encoder.backbone.bn1.num_batches_tracked.item() == 2 * 4
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
