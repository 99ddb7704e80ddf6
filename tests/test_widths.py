"""The conv blocks' widths as a training option (``train --widths``): a fourth block makes
the net deeper and widens what a top-conv unit sees; the command line checks the input
size against the blocks and a --pretrained net's widths against the ones asked for, and
a run keeps its widths in its checkpoint."""
from commandline import one_line, run_main
from tinyinterp.interpretable import InterpretableMask
from tinyinterp.layers import Conv2d
from tinyinterp.pooling import MaxPool2d
from tinyinterp.runs import load_run
from tinyinterp.vgg import receptive_field, small_vgg


def _top_conv_field(model):
    top = model.interpretable_indices[0]
    return receptive_field(model, top)[2]


def test_a_fourth_block_keeps_the_map_side_at_twice_the_input_and_widens_the_field():
    three = small_vgg(num_classes=1, input_size=64, interpretable=True)
    four = small_vgg(num_classes=1, input_size=128, widths=(32, 64, 128, 128), interpretable=True)
    sides = [[m.filter_loss.n for m in net.layers if isinstance(m, InterpretableMask)] for net in (three, four)]
    assert sides == [[8, 8], [8, 8]]  # the same 8x8 maps, each cell 16 px instead of 8
    assert sum(isinstance(layer, MaxPool2d) for layer in four.layers) == 5
    assert sum(isinstance(layer, Conv2d) for layer in four.layers) == 10
    # at the same 128 px input, the top conv's units see twice as many pixels across
    wide, narrow = _top_conv_field(four), _top_conv_field(small_vgg(num_classes=1, input_size=128))
    assert (narrow, wide) == (52.0, 108.0)
    # and as large a share of the input as the three-block net's at 64 px
    assert wide / 128 >= _top_conv_field(three) / 64 * 0.8


def test_the_command_line_checks_the_size_against_the_blocks(capsys):
    rc, _, err = run_main(["train", "--size", "48", "--widths", "4", "4", "4", "4", "--out", "unused"], capsys)
    assert rc == 2 and "multiples of 32" in one_line(err)
    rc, _, err = run_main(["train", "--size", "32", "--widths", "4", "0"], capsys)
    assert rc == 2 and "--widths" in err


def test_a_run_keeps_its_widths_and_fine_tuning_needs_the_same(tmp_path, capsys):
    out = tmp_path / "deep"
    common = ["--size", "32", "--images-per-class", "4", "--no-report", "--batch-size", "8"]
    rc, _, err = run_main(["train", "--protocol", "scratch", "--nets", "ordinary", "--epochs", "1",
                           "--widths", "4", "4", "4", "4", "--out", str(out), *common], capsys)
    assert rc == 0, err
    model, cfg, _ = load_run(out / "ordinary")
    assert cfg.widths == [4, 4, 4, 4]
    assert sum(isinstance(layer, MaxPool2d) for layer in model.layers) == 5
    pretrained = str(out / "ordinary" / "checkpoint.npz")
    # the default widths do not fit the four-block net: refused before anything is loaded
    rc, _, err = run_main(["train", "--task", "bird", "--nets", "ordinary", "--finetune-epochs", "1",
                           "--pretrained", pretrained, "--out", str(tmp_path / "ft"), *common], capsys)
    assert rc == 2 and "--widths 4 4 4 4" in one_line(err)
    assert not (tmp_path / "ft").exists()


def test_fine_tuning_with_the_pretrained_widths_trains(tmp_path, capsys):
    common = ["--size", "32", "--images-per-class", "4", "--no-report", "--batch-size", "8",
              "--widths", "4", "4", "4", "4"]
    rc, _, err = run_main(["train", "--protocol", "scratch", "--nets", "ordinary", "--epochs", "1",
                           "--out", str(tmp_path / "pre"), *common], capsys)
    assert rc == 0, err
    rc, _, err = run_main(["train", "--task", "bird", "--nets", "interpretable", "--finetune-epochs", "1",
                           "--pretrained", str(tmp_path / "pre" / "ordinary" / "checkpoint.npz"),
                           "--out", str(tmp_path / "ft"), *common], capsys)
    assert rc == 0, err
    model, cfg, _ = load_run(tmp_path / "ft" / "interpretable")
    assert cfg.widths == [4, 4, 4, 4] and cfg.init_from
    assert [m.filter_loss.n for m in model.layers if isinstance(m, InterpretableMask)] == [2, 2]
