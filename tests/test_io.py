import numpy as np
import pytest
from PIL import Image

from advcam_pl import io


def test_npz_round_trip_without_pickle(tmp_path):
    path = io.atomic_save_npz(tmp_path / "a" / "x.npz", keys=np.array([1, 4]), cam=np.ones((2, 3, 3), np.float32))
    data = io.load_npz(path)
    assert data["keys"].tolist() == [1, 4] and data["cam"].shape == (2, 3, 3)


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        io.atomic_save_npz(tmp_path / "x.npz", a=np.zeros(3))
    assert list(tmp_path.iterdir()) == []


def test_palette_png_keeps_indices_and_voc_colours(tmp_path):
    mask = np.array([[0, 1, 15], [20, 255, 0]], dtype=np.uint8)
    path = io.atomic_save_palette_png(tmp_path / "m.png", mask)
    image = Image.open(path)
    assert image.mode == "P"
    np.testing.assert_array_equal(np.array(image), mask)
    palette = image.getpalette()
    assert palette[3:6] == [128, 0, 0]        # aeroplane
    assert palette[15 * 3:15 * 3 + 3] == [192, 128, 128]  # person
    assert palette[255 * 3:255 * 3 + 3] == [224, 224, 192]  # void


def test_json_is_atomic_and_readable(tmp_path):
    import json

    path = io.atomic_save_json(tmp_path / "m.json", {"miou": 0.5})
    assert json.loads(path.read_text()) == {"miou": 0.5}
