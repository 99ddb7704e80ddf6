"""The data root: TINYINTERP_DATA names the folder that holds real CUB, for tests, lessons
and studies; unset, the folder shared/ beside the checkout."""
from pathlib import Path

from tinyinterp.data.root import FULL_CUB, VARIABLE, data_root, find_data, missing

ROOT = Path(__file__).resolve().parents[1]


def test_the_variable_names_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv(VARIABLE, str(tmp_path))
    assert data_root() == tmp_path
    assert find_data("cub_real_subset") is None  # not there yet
    (tmp_path / "CUB_200_2011").mkdir()
    (tmp_path / "CUB_200_2011" / "images.txt").write_text("1 a/b.jpg\n")
    assert find_data(*FULL_CUB) == tmp_path / "CUB_200_2011"
    (tmp_path / "cub200_160").mkdir()
    (tmp_path / "cub200_160" / "images.txt").write_text("1 a/b.jpg\n")
    assert find_data(*FULL_CUB) == tmp_path / "cub200_160"  # the fast copy first


def test_unset_it_is_shared_beside_the_checkout(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    assert data_root() == ROOT.parent / "shared"


def test_the_message_names_the_variable_not_a_path():
    text = missing("cub200_160")
    assert text == "set TINYINTERP_DATA to a folder holding cub200_160/"
    assert str(ROOT) not in text
