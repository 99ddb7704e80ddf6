"""The box crop's margin (``--crop-margin``, TrainConfig.crop_margin): the crop it makes,
the data key, the check, and the command line carrying it into a run's config."""
import numpy as np
import pytest

from commandline import run_main
from tinyinterp.runs import TOY_BIRDS, TrainConfig, data_key, load_data, load_run


def test_a_wider_margin_zooms_out_about_the_box_centre():
    """A landmark's offset from the crop's centre shrinks by (1 + 2*0.1) / (1 + 2*0.25) =
    0.8 where the wider crop stays inside the photo (most toy birds; at the photo's edge
    the crop is clipped and its centre moves)."""
    def offsets(margin):
        ds = load_data(TrainConfig(images_per_class=6, size=64, crop_margin=margin))[0]
        return np.abs(ds.landmarks - 32.0)[ds.visible], ds
    narrow, ds10 = offsets(0.1)
    wide, ds25 = offsets(0.25)
    assert ds10.visible.sum() == ds25.visible.sum()  # the wider crop loses no landmark
    ratio = wide[narrow > 4] / narrow[narrow > 4]
    assert np.median(ratio) == pytest.approx(0.8, abs=1e-4)
    assert not np.array_equal(ds10.images, ds25.images)


def test_the_margin_is_part_of_the_data_key_and_checked():
    assert data_key(TrainConfig(crop_margin=0.1)) != data_key(TrainConfig(crop_margin=0.25))
    with pytest.raises(ValueError, match="crop_margin"):
        TrainConfig(crop_margin=-0.1)


def test_the_command_line_keeps_the_margin_in_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, _ = run_main(["train", "--protocol", "scratch", "--nets", "ordinary", "--epochs", "1",
                              "--size", "32", "--images-per-class", "4", "--crop-margin", "0.25",
                              "--out", str(out), "--no-report"], capsys)
    assert rc == 0 and "box crop, margin 25%" in stdout
    assert load_run(out / "ordinary")[1].crop_margin == 0.25
