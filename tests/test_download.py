"""download-cub end to end, without the network: a small tarball in the official layout,
built here, served from a file:// address or a local HTTP server on 127.0.0.1."""
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyinterp.data import PART_NAMES, load_cub

from commandline import one_line, run_main  # beside this file

# (relative path, width, height, box x y w h, (part id, x, y) visible parts)
PHOTOS = [
    ("001.Black_footed_Albatross/Black_Footed_Albatross_0001_1.jpg", 500, 375,
     (60.0, 27.0, 325.0, 304.0), [(2, 312.0, 182.0)]),
    ("001.Black_footed_Albatross/Black_Footed_Albatross_0002_2.jpg", 333, 500,
     (100.0, 50.0, 200.0, 400.0), [(5, 250.5, 400.0), (14, 10.0, 499.0)]),
    ("002.Laysan_Albatross/Laysan_Albatross_0001_3.jpg", 120, 90,
     (10.0, 5.0, 100.0, 80.0), [(1, 60.0, 45.0)]),
    ("002.Laysan_Albatross/Laysan_Albatross_0002_4.jpg", 400, 400,
     (0.0, 0.0, 400.0, 400.0), [(9, 199.0, 201.0)]),
]


def build_tarball(path, crlf=False):
    """A tiny CUB_200_2011.tgz in the official layout (plus its top-level attributes.txt)."""
    rng = np.random.default_rng(0)
    files = {"attributes.txt": "1 has_bill_shape::curved\n"}
    nl = "\r\n" if crlf else "\n"
    root = "CUB_200_2011/"
    files[root + "README"] = "The Caltech-UCSD Birds-200-2011 Dataset (a tiny stand-in)\n"
    files[root + "classes.txt"] = nl.join(["1 001.Black_footed_Albatross", "2 002.Laysan_Albatross"]) + nl
    files[root + "images.txt"] = "".join(f"{i} {p[0]}{nl}" for i, p in enumerate(PHOTOS, 1))
    files[root + "image_class_labels.txt"] = "".join(
        f"{i} {int(p[0][:3])}{nl}" for i, p in enumerate(PHOTOS, 1))
    files[root + "train_test_split.txt"] = "".join(f"{i} {i % 2}{nl}" for i in range(1, len(PHOTOS) + 1))
    files[root + "bounding_boxes.txt"] = "".join(
        f"{i} {' '.join(map(str, p[3]))}{nl}" for i, p in enumerate(PHOTOS, 1))
    files[root + "parts/parts.txt"] = "".join(f"{k} {name}{nl}" for k, name in enumerate(PART_NAMES, 1))
    locs = []
    for i, p in enumerate(PHOTOS, 1):
        seen = {part: (x, y) for part, x, y in p[4]}
        for part in range(1, len(PART_NAMES) + 1):
            x, y = seen.get(part, (0.0, 0.0))
            locs.append(f"{i} {part} {x} {y} {int(part in seen)}")
    files[root + "parts/part_locs.txt"] = nl.join(locs) + nl
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            _add(tar, name, text.encode())
        for rel, w, h, *_ in PHOTOS:
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
            _add(tar, root + "images/" + rel, buf.getvalue())
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def tarball(tmp_path):
    path = tmp_path / "served" / "CUB_200_2011.tgz"
    path.parent.mkdir()
    return path, build_tarball(path)


def test_download_extract_and_downscale_end_to_end(tarball, tmp_path, capsys):
    path, md5 = tarball
    out = tmp_path / "data"
    rc, printed, err = run_main(["download-cub", str(out), "--url", path.as_uri(), "--md5", md5,
                            "--long-side", "160"], capsys)
    assert rc == 0, err
    assert (out / "CUB_200_2011.tgz").read_bytes() == path.read_bytes()
    assert not (out / "CUB_200_2011.tgz.part").exists()
    full = out / "CUB_200_2011"
    assert (full / "images.txt").is_file() and (out / "attributes.txt").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["CUB_200_2011", "CUB_200_2011.tgz", "attributes.txt",
                                                     "cub200_160"]  # no hidden work folders left
    small = out / "cub200_160"
    # sizes: longer side 160, the other rounded; the 120 x 90 photo is not enlarged
    assert (small / "image_sizes.txt").read_text() == "1 160 120\n2 107 160\n3 120 90\n4 160 160\n"
    for i, (rel, *_) in enumerate(PHOTOS, 1):
        with Image.open(small / "images" / rel) as im:
            assert im.format == "JPEG"
            assert f"{i} {im.width} {im.height}" in (small / "image_sizes.txt").read_text()
    # boxes: x*sx y*sy w*sx h*sy, sx = new width / width, one decimal, by hand:
    #  1: 500x375 -> 160x120, sx = sy = 0.32: 60*.32=19.2, 27*.32=8.64, 325*.32=104, 304*.32=97.28
    #  2: 333x500 -> 107x160, sx = 107/333 = 0.32132.., sy = 0.32: 100*sx = 32.13, 200*sx = 64.26
    #  3: 120x90 unchanged; 4: 400x400 -> 160x160, 0.4
    assert (small / "bounding_boxes.txt").read_text() == (
        "1 19.2 8.6 104.0 97.3\n2 32.1 16.0 64.3 128.0\n3 10.0 5.0 100.0 80.0\n4 0.0 0.0 160.0 160.0\n")
    locs = {tuple(line.split()[:2]): line for line in (small / "parts" / "part_locs.txt").read_text().splitlines()}
    assert locs[("1", "2")] == "1 2 99.8 58.2 1"    # 312*.32 = 99.84, 182*.32 = 58.24
    assert locs[("2", "5")] == "2 5 80.5 128.0 1"   # 250.5*107/333 = 80.49, 400*.32
    assert locs[("2", "14")] == "2 14 3.2 159.7 1"  # 10*107/333 = 3.21, 499*.32 = 159.68
    assert locs[("4", "9")] == "4 9 79.6 80.4 1"    # 199*.4, 201*.4
    assert locs[("1", "1")] == "1 1 0.0 0.0 0"      # invisible parts stay 0.0 0.0 0
    for rel in ("images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt",
                "parts/parts.txt"):
        assert (small / rel).read_text() == (full / rel).read_text(), rel
    manifest = (small / "MANIFEST.sha256").read_text().splitlines()
    assert len(manifest) == len(PHOTOS)
    for line in manifest:
        digest, rel = line.split("  ")
        assert hashlib.sha256((small / rel).read_bytes()).hexdigest() == digest
    # both folders read as CUB
    assert len(load_cub(full, size=32)) == len(load_cub(small, size=32)) == len(PHOTOS)
    assert "TINYINTERP_DATA" in printed
    # a second run finds everything done and downloads nothing
    before = (small / "bounding_boxes.txt").stat().st_mtime_ns
    rc, printed, _ = run_main(["download-cub", str(out), "--url", "file:///nowhere.tgz", "--md5", md5,
                          "--long-side", "160"], capsys)
    assert rc == 0 and "already" in printed
    assert (small / "bounding_boxes.txt").stat().st_mtime_ns == before


def test_windows_line_endings_are_normalised(tmp_path, capsys):
    path = tmp_path / "CUB_200_2011.tgz"
    md5 = build_tarball(path, crlf=True)
    out = tmp_path / "data"
    assert run_main(["download-cub", str(out), "--url", path.as_uri(), "--md5", md5, "--long-side", "64"],
               capsys)[0] == 0
    text = (out / "cub200_64" / "classes.txt").read_bytes()
    assert b"\r" not in text and text.startswith(b"1 001.Black_footed_Albatross\n")


def test_a_corrupt_tarball_is_refused_and_not_extracted(tarball, tmp_path, capsys):
    path, md5 = tarball
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped on the way
    path.write_bytes(bytes(data))
    out = tmp_path / "data"
    rc, _, err = run_main(["download-cub", str(out), "--url", path.as_uri(), "--md5", md5], capsys)
    line = one_line(err)
    assert rc == 1 and "MD5" in line and md5 in line and "not extracted" in line
    assert list(out.iterdir()) == []  # the bad download deleted, nothing extracted


@pytest.mark.parametrize("md5", ["abc", "g" * 32, "0" * 33])
def test_a_mistyped_md5_is_refused_before_any_download(md5, tmp_path, capsys):
    out = tmp_path / "data"
    rc, _, err = run_main(["download-cub", str(out), "--url", "file:///nowhere.tgz", "--md5", md5], capsys)
    assert rc == 2 and "--md5" in err and "32 hex digits" in err
    assert not out.exists()


def test_an_md5_in_capitals_is_the_same_md5(tarball, tmp_path, capsys):
    path, md5 = tarball
    out = tmp_path / "data"
    rc, _, _ = run_main(["download-cub", str(out), "--url", path.as_uri(), "--md5", md5.upper()], capsys)
    assert rc == 0 and (out / "CUB_200_2011" / "images.txt").is_file()


def test_an_archive_that_is_not_cub_is_refused_whole(tmp_path, capsys):
    path = tmp_path / "other.tgz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "something/else.txt", b"hello")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    out = tmp_path / "data"
    rc, _, err = run_main(["download-cub", str(out), "--url", path.as_uri(), "--md5", md5], capsys)
    assert rc == 1 and "not CUB-200-2011" in one_line(err)
    assert sorted(p.name for p in out.iterdir()) == ["CUB_200_2011.tgz"]  # nothing half-extracted


class Server:
    """A local HTTP server for one file that honours Range requests; ``cut_after`` makes
    the next response stop after that many bytes (a dropped connection)."""

    def __init__(self, data):
        self.data, self.cut_after, self.ranges = data, None, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                start = 0
                wanted = self.headers.get("Range")
                server.ranges.append(wanted)
                if wanted:
                    start = int(wanted.split("=")[1].rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                else:
                    self.send_response(200)
                body = server.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/CUB_200_2011.tgz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def test_an_interrupted_download_is_kept_not_extracted_and_then_resumed(tarball, tmp_path, capsys):
    path, md5 = tarball
    data = path.read_bytes()
    out = tmp_path / "data"
    with Server(data) as server:
        server.cut_after = len(data) // 3
        rc, _, err = run_main(["download-cub", str(out), "--url", server.url, "--md5", md5], capsys)
        line = one_line(err)
        assert rc == 1 and "stopped after" in line and "run the command again" in line
        part = out / "CUB_200_2011.tgz.part"
        assert part.read_bytes() == data[:len(data) // 3]
        assert sorted(p.name for p in out.iterdir()) == ["CUB_200_2011.tgz.part"]  # not extracted
        rc, _, err = run_main(["download-cub", str(out), "--url", server.url, "--md5", md5], capsys)
        assert rc == 0, err
        assert server.ranges == [None, f"bytes={len(data) // 3}-"]  # the second run continued
    assert (out / "CUB_200_2011.tgz").read_bytes() == data and not part.exists()
    assert (out / "CUB_200_2011" / "images.txt").is_file()


def test_a_server_without_ranges_starts_the_download_again(tarball, tmp_path, capsys):
    path, md5 = tarball
    out = tmp_path / "data"
    out.mkdir()
    (out / "CUB_200_2011.tgz.part").write_bytes(b"stale bytes of another try")
    # a file:// address ignores the Range header: the .part is written again from the start
    rc, printed, err = run_main(["download-cub", str(out), "--url", path.as_uri(), "--md5", md5], capsys)
    assert rc == 0, err
    assert "starting again" in printed
    assert (out / "CUB_200_2011.tgz").read_bytes() == path.read_bytes()


def test_a_missing_address_is_one_line(tmp_path, capsys):
    rc, _, err = run_main(["download-cub", str(tmp_path / "data"), "--url",
                      (tmp_path / "none.tgz").as_uri()], capsys)
    assert rc == 1 and "none.tgz" in one_line(err)
    assert not (tmp_path / "data").exists()  # nothing made
