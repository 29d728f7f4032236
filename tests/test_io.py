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


# -- temporary files of killed writes, and "is this file complete" -------------------------------------


def test_temp_names_say_which_file_and_which_writer(tmp_path):
    target = tmp_path / "2007_000032.npz"
    tmp = io.temp_path(target)
    assert tmp.parent == tmp_path and tmp.name.startswith(io.temp_prefix(target)) and tmp.name.endswith(".tmp")
    assert io.temp_target(tmp.name) == "2007_000032.npz"
    assert io.temp_target(".2007_000032.npz.a1b2c3d4.tmp") == "2007_000032.npz"  # an earlier version's name
    assert io.temp_target(".notes.txt.tmp") is None  # not a kind of file this project writes
    assert io.temp_target("2007_000032.npz") is None


def test_stale_temp_files_are_removed_and_live_writers_kept(tmp_path, killed_writer_temp):
    dead = killed_writer_temp(tmp_path / "a.npz")  # kill -9 during a write
    legacy = tmp_path / ".b.png.q8w7e6r5.tmp"  # an earlier version's temporary name
    legacy_ckpt = tmp_path / ".cam_classifier.ckpt.tmp"
    alive = io.temp_path(tmp_path / "c.npz")  # this process: still writing
    foreign = tmp_path / ".editor.swp.tmp"  # not ours
    sub = tmp_path / "val"
    sub.mkdir()
    nested = killed_writer_temp(sub / "d.png")
    for path in (dead, legacy, legacy_ckpt, alive, foreign, nested):
        path.write_bytes(b"half")
    (tmp_path / "a.npz").write_bytes(b"done")

    assert sorted(p.name for p in io.remove_stale_temp_files(tmp_path)) == sorted(
        [dead.name, legacy.name, legacy_ckpt.name])
    assert alive.exists() and foreign.exists() and nested.exists() and (tmp_path / "a.npz").exists()
    assert io.remove_stale_temp_files(tmp_path, recursive=True) == [nested]
    ckpt_tmp = killed_writer_temp(tmp_path / "irn.ckpt")
    other_tmp = killed_writer_temp(tmp_path / "seg.ckpt")
    ckpt_tmp.write_bytes(b"x")
    other_tmp.write_bytes(b"x")
    assert io.remove_stale_temp_files(tmp_path, target="irn.ckpt") == [ckpt_tmp] and other_tmp.exists()


def test_another_hosts_temp_file_is_kept_until_it_is_old(tmp_path):
    import os
    import time

    other = tmp_path / f".a.npz.otherhost-{os.getpid()}.abcdefgh.tmp"
    other.write_bytes(b"x")
    assert io.remove_stale_temp_files(tmp_path) == [] and other.exists()
    old = time.time() - io.STALE_SECONDS - 60
    os.utime(other, (old, old))
    assert io.remove_stale_temp_files(tmp_path) == [other]


def test_completeness_checks_catch_truncated_files(tmp_path):
    npz = io.atomic_save_npz(tmp_path / "x.npz", keys=np.arange(3), cam=np.zeros((3, 4, 4), np.float32))
    png = io.atomic_save_palette_png(tmp_path / "x.png", np.zeros((5, 7), np.uint8))
    assert io.npz_is_complete(npz, ("keys", "cam")) and not io.npz_is_complete(npz, ("high_res",))
    assert io.png_is_complete(png) and io.file_is_complete(npz) and io.file_is_complete(png)
    for path in (npz, png):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # a disk-full or a copy cut short
        assert not io.file_is_complete(path)
    assert not io.file_is_complete(tmp_path / "missing.npz")
    with pytest.raises(io.CorruptFileError, match=r"x\.npz is not a readable \.npz"):
        io.load_npz(npz)
