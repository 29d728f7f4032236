"""IR labels: confident foreground, confident background, ignore in between (IRN's rules)."""

import numpy as np
from PIL import Image

from advcam_pl.refine.ir_label import combine_confident, ir_label, write_ir_label


def test_combine_confident_follows_irn():
    fg = np.array([[3, 0, 0, 5], [0, 0, 7, 0]])
    bg = np.array([[3, 3, 0, 0], [0, 5, 7, 9]])
    out = combine_confident(fg, bg)
    # fg class wins; fg bg + bg object -> ignore; both bg -> background.
    assert out.tolist() == [[3, 255, 0, 5], [0, 255, 7, 255]]
    assert out.dtype == np.uint8


def three_bands(h=24, w=36):
    """One class (key 6 → label 7): strong on the left, medium in the middle, weak on the right."""
    high_res = np.zeros((1, h, w), np.float32)
    high_res[0, :, :12] = 0.9
    high_res[0, :, 12:24] = 0.25  # between bg_threshold 0.15 and fg_threshold 0.35
    high_res[0, :, 24:] = 0.05
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :12] = (200, 40, 40)
    img[:, 12:24] = (40, 200, 40)
    img[:, 24:] = (40, 40, 200)
    return img, high_res, np.array([6])


def test_strong_medium_weak_cams_give_class_ignore_background():
    img, high_res, keys = three_bands()
    for crf in (False, None):  # the CRF keeps regions that follow the image's colours
        label = ir_label(img, high_res, keys, fg_threshold=0.35, bg_threshold=0.15, crf=crf)
        assert label.dtype == np.uint8 and label.shape == (24, 36)
        assert np.all(label[:, :12] == 7)
        assert np.all(label[:, 12:24] == 255)
        assert np.all(label[:, 24:] == 0)


def test_a_lower_background_threshold_turns_weak_cams_into_ignore():
    img, high_res, keys = three_bands()
    # With bg_threshold below the weak band's 0.05, that band is no longer confidently background.
    label = ir_label(img, high_res, keys, fg_threshold=0.30, bg_threshold=0.04, crf=False)
    assert np.all(label[:, 24:] == 255) and np.all(label[:, 12:24] == 255)


def test_two_classes_take_the_argmax():
    high_res = np.zeros((2, 4, 6), np.float32)
    high_res[0, :, :3] = 0.8
    high_res[1, :, :3] = 0.5
    high_res[1, :, 3:] = 0.7
    label = ir_label(None, high_res, np.array([0, 11]), crf=False)
    assert np.all(label[:, :3] == 1) and np.all(label[:, 3:] == 12)


def test_no_class_is_all_background():
    label = ir_label(np.zeros((5, 7, 3), np.uint8), np.zeros((0, 5, 7), np.float32), np.zeros(0, np.int64))
    assert label.shape == (5, 7) and not label.any()


def test_write_ir_label_writes_a_palette_png(tmp_path):
    img, high_res, keys = three_bands()
    counts = write_ir_label(tmp_path / "out" / "a.png", img, high_res, keys, fg_threshold=0.35, bg_threshold=0.15)
    with Image.open(tmp_path / "out" / "a.png") as png:
        assert png.mode == "P"
        label = np.array(png)
    assert counts.tolist() == [(label == 7).sum(), (label == 0).sum(), (label == 255).sum()]
    assert counts.tolist() == [24 * 12] * 3
