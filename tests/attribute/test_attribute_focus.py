"""Attribution-focus measures and the mosaic picture."""

from __future__ import annotations

import numpy as np

from failscope.attribute.focus import box_share, class_region, focus_measures, normalised
from failscope.attribute.mosaic import GRID, OVERLAY, TILE, mosaic_image


def test_normalised_maps_and_concentration():
    maps = np.zeros((3, 4, 4))
    maps[0, 1, 2] = 5.0  # one cell
    maps[2] = 1.0  # spread evenly; map 1 is all zero: counts as uniform
    p = normalised(maps)
    np.testing.assert_allclose(p.sum(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(p[1], 1 / 16)
    region = np.ones((4, 4), dtype=bool)
    assert focus_measures(p[:1], region=region)["concentration"] == 1.0
    assert abs(focus_measures(p[1:], region=region)["concentration"]) < 1e-12


def test_centre_region_and_box_shares():
    p = normalised(np.ones((1, 4, 4)))
    m = focus_measures(p, region=np.ones((4, 4), dtype=bool))
    assert m["outside_centre"] == 0.75  # the central 2 x 2 of 4 x 4 cells
    assert m["outside_class_region"] == 0.0
    # a box over the left half of a 32 px image, and one over a quarter of one cell
    boxes = np.array([[0, 0, 16, 32], [0, 0, 4, 4]])
    np.testing.assert_allclose(box_share(np.repeat(p, 2, 0), boxes, image_size=(32, 32)),
                               [0.5, 1 / 16 / 4])  # fmt: skip
    m = focus_measures(p, region=np.ones((4, 4), bool), boxes=boxes[:1], image_size=(32, 32))
    assert m["background"] == 0.5


def test_class_region_holds_half_the_mass_in_the_fewest_cells():
    ref = np.zeros((2, 2, 2))
    ref[:, 0, 0], ref[:, 0, 1], ref[:, 1, 1] = 0.6, 0.3, 0.1
    assert class_region(ref).tolist() == [[True, False], [False, False]]
    assert class_region(ref, mass=0.8).tolist() == [[True, True], [False, False]]


def test_mosaic_has_a_tile_per_member_and_red_frames_on_failures(tmp_path):
    from PIL import Image

    paths = []
    for i in range(3):
        arr = np.zeros((16, 16, 3), np.uint8)
        arr[:, :, 1] = 200  # green images
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    maps = np.zeros((3, 4, 4), np.float32)
    maps[:, 0, 0] = 1.0
    im = mosaic_image([*paths, tmp_path / "missing.png"], np.concatenate([maps, maps[:1]]),
                      np.array([True, False, False, True]), image_size=None)  # fmt: skip
    assert im.size == (GRID * TILE + 4 + 2 * OVERLAY, 2 * OVERLAY)
    arr = np.asarray(im)
    assert tuple(arr[0, 0]) == (220, 30, 30)  # failure frame on the first tile
    assert tuple(arr[TILE // 2, TILE + TILE // 2]) == (0, 200, 0)  # second tile, a crop
    assert tuple(arr[0, 3 * TILE + 10]) == (255, 255, 255)  # the missing image left a gap
