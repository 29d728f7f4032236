"""CAM and AdvCAM for any classifier with ``features(x)`` and a 1×1 ``classifier`` conv.

    from advcam_pl.advcam import ClimbOptions, adv_climb, adv_climb_batch, compute_cam
    result = adv_climb(model, image, classes)        # AdvCAM, official defaults
    result.high_res                                  # [n, H, W], each map max-normalised
    results = adv_climb_batch(model, images, classes_per_image, ClimbOptions(steps=10))  # many at once
"""

from advcam_pl.advcam.adapters import NonLinearHeadError, as_cam_model
from advcam_pl.advcam.aggregate import aggregate_scales, max_normalise, strided_size, strided_up_size
from advcam_pl.advcam.cam import compute_cam
from advcam_pl.advcam.cam_io import cam_path, load_cam, save_cam
from advcam_pl.advcam.climb import ClimbOptions, adv_climb, adv_climb_batch
from advcam_pl.advcam.result import AdvCAMResult, Trajectory

__all__ = [
    "AdvCAMResult",
    "NonLinearHeadError",
    "ClimbOptions",
    "Trajectory",
    "adv_climb",
    "adv_climb_batch",
    "aggregate_scales",
    "as_cam_model",
    "cam_path",
    "compute_cam",
    "load_cam",
    "max_normalise",
    "save_cam",
    "strided_size",
    "strided_up_size",
]
