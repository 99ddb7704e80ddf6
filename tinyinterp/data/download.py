"""``python -m tinyinterp download-cub DIR``: CUB-200-2011 in one command.

What it writes (each step is skipped when its result is already there, so running the
command again after an interruption goes on where it stopped):

    DIR/CUB_200_2011.tgz.part   the download while it runs; a second run continues it
                                (an HTTP Range request) or, where the server cannot,
                                starts it again
    DIR/CUB_200_2011.tgz        the complete download, renamed from .part only once its
                                MD5 matches: a corrupt file is deleted, never extracted
    DIR/CUB_200_2011/           the dataset as published (11,788 photos, 1.1 GB), made
                                in a hidden folder and renamed when complete
    DIR/cub200_<N>/             with ``--long-side N``: every photo downscaled so that its
                                longer side is N px, with its annotations scaled to match

The downscaled copy (``--long-side 160``: 77 MB, all of CUB loads in seconds) is made as
follows. Each image is decoded with Pillow, resized with ``Image.LANCZOS`` to
``round(width * N / longer side)`` x ``round(height * N / longer side)`` (never enlarged)
and saved as JPEG quality 88; with ``sx = new width / width`` and ``sy = new height /
height``, ``bounding_boxes.txt`` becomes ``x*sx y*sy width*sx height*sy`` and
``parts/part_locs.txt`` ``x*sx y*sy`` (one decimal each; visibility unchanged, invisible
parts stay ``0.0 0.0 0``). ``images.txt``, ``classes.txt``, ``image_class_labels.txt``,
``train_test_split.txt`` and ``parts/parts.txt`` are copied (line endings LF), and
``image_sizes.txt`` (``<id> <width> <height>`` of the new files) and
``MANIFEST.sha256`` (``sha256sum -c`` checks every JPEG) are added.

With ``TINYINTERP_DATA=DIR`` the tests, the lessons and the studies find
``DIR/cub200_160`` (:mod:`tinyinterp.data.root`).

The address is the Caltech data repository's record of the dataset
(https://data.caltech.edu/records/65de6-vp158), and the MD5 the one that widely used
loaders check for ``CUB_200_2011.tgz``; ``--url`` and ``--md5`` replace them (a mirror, or
a ``file://`` address of a copy already on disk).
"""
import argparse
import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from ..cli import Interrupted, UsageError, UserError, add_parser, int_at_least, progress
from .cub import CubFormatError, read_keyed

CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1"
CUB_MD5 = "97eceeb196236b17998738112f37df78"
TARBALL = "CUB_200_2011.tgz"
FOLDER = "CUB_200_2011"
CHUNK = 1 << 20
JPEG_QUALITY = 88
COPIED = ("images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt",
          "parts/parts.txt")


class DownloadError(UserError):
    """The download, its checksum, the archive or its layout is not what it should be."""


def _mb(n):
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def md5_hex(text):
    """An argparse type: an MD5 digest, 32 hex digits (any case), returned lower-case; a
    mistyped one is refused before anything is downloaded."""
    digest = text.strip().lower()
    if len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
        raise argparse.ArgumentTypeError(f"expected 32 hex digits, got {text!r}")
    return digest


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- download

def fetch(url, dest, md5, log=print):
    """Download ``url`` to ``dest`` through ``dest.part`` (continued where a previous run
    stopped), check its MD5 and only then rename it to ``dest``. Returns ``dest``."""
    dest = Path(dest)
    if dest.is_file():
        got = file_md5(dest)
        if got != md5:
            raise DownloadError(f"{dest} is there but its MD5 is {got}, not {md5}: delete it "
                                f"and run again")
        log(f"{dest}: already downloaded, MD5 checked")
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and have):  # 416: nothing after byte `have`: the .part is whole
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        resp = None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
    if resp is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with resp:
            if have and getattr(resp, "status", None) != 206:
                log(f"{url} does not continue a download: starting again")
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length else None
            done = have
            log(f"downloading {url}" + (f" from {_mb(have)}" if have else "") + f" -> {part}")
            try:
                with open(part, "ab" if have else "wb") as f:
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        done += len(chunk)
                        progress(done // 10**6, (total or done) // 10**6, extra="MB")
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(f"the download stopped after {_mb(done)} of {_mb(total)} ({e}); "
                                    f"{part} is kept: run the command again to continue it") from None
            except KeyboardInterrupt:
                raise Interrupted(f"interrupted after {_mb(done)} of {_mb(total)}; {part} is kept: "
                                  f"run the command again to continue it") from None
            if total is not None and done < total:
                raise DownloadError(f"the download stopped after {_mb(done)} of {_mb(total)}; "
                                    f"{part} is kept: run the command again to continue it")
            log(f"\rdownloaded {_mb(done)}")
    got = file_md5(part)
    if got != md5:
        part.unlink()
        raise DownloadError(f"{url}: the download's MD5 is {got}, not {md5}: it is corrupt and "
                            f"was deleted (not extracted); run the command again")
    os.replace(part, dest)
    log(f"{dest}: MD5 checked")
    return dest


# ---------------------------------------------------------------------------- extract

def _safe(member):
    """A plain file or folder whose path stays inside the extraction folder."""
    parts = Path(member.name).parts
    return (member.isfile() or member.isdir()) and not member.name.startswith("/") \
        and ".." not in parts


def extract(tgz, folder, log=print):
    """Extract the CUB tarball into ``folder`` -> ``folder/CUB_200_2011``: into a hidden
    folder first, checked to hold the CUB layout, then renamed."""
    folder = Path(folder)
    final = folder / FOLDER
    if (final / "images.txt").is_file():
        log(f"{final}: already extracted")
        return final
    work = folder / f".{FOLDER}.extracting"
    shutil.rmtree(work, ignore_errors=True)
    log(f"extracting {tgz} -> {final}")
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            members = [m for m in tar.getmembers() if _safe(m)]
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(work, members=members, **kwargs)
        if not (work / FOLDER / "images.txt").is_file():
            raise DownloadError(f"{tgz} holds no {FOLDER}/images.txt: not CUB-200-2011")
        os.replace(work / FOLDER, final)
        for extra in work.iterdir():  # the archive's attributes.txt, beside the dataset
            if not (folder / extra.name).exists():
                os.replace(extra, folder / extra.name)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"{tgz}: not a readable .tgz archive ({e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


# -------------------------------------------------------------------------- downscale

def _scaled_size(width, height, long_side):
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _downscale_image(src, dst, long_side):
    """Write ``src`` downscaled to ``dst`` (JPEG); returns (old size, new size)."""
    with Image.open(src) as im:
        im.load()
        old = im.size
        new = _scaled_size(*old, long_side)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        out = im.resize(new, Image.LANCZOS) if new != old else im
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(dst, format="JPEG", quality=JPEG_QUALITY)
    return old, new


def downscale(src, dst, long_side, log=print, threads=None):
    """Write a copy of the CUB folder ``src`` to ``dst`` with every image's longer side
    ``long_side`` px and its annotations scaled to match (see the module docstring)."""
    src, dst = Path(src), Path(dst)
    if (dst / "images.txt").is_file():
        log(f"{dst}: already there")
        return dst
    images = read_keyed(src, "images.txt", ["int", "str"])
    boxes = read_keyed(src, "bounding_boxes.txt", ["int"] + ["float"] * 4)
    locs = read_keyed(src, "parts/part_locs.txt", ["int", "int", "float", "float", "bit"], nkey=2)
    work = dst.with_name(f".{dst.name}.making")
    shutil.rmtree(work, ignore_errors=True)
    log(f"downscaling {len(images)} images to a longer side of {long_side} px -> {dst}")
    ids = list(images)

    def one(image_id):
        rel = images[image_id][1][0]
        try:
            return _downscale_image(src / "images" / rel, work / "images" / rel, long_side)
        except (OSError, ValueError) as e:
            raise CubFormatError(f"images/{rel}: cannot read or write it ({e})") from None

    try:
        sizes = {}
        with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:  # Pillow lets go of the GIL
            for k, (image_id, size) in enumerate(zip(ids, pool.map(one, ids))):
                sizes[image_id] = size
                progress(k + 1, len(ids), extra="images")
        scale = {i: (new[0] / old[0], new[1] / old[1]) for i, (old, new) in sizes.items()}

        def factors(image_id, rel, lineno):
            if image_id not in scale:
                raise CubFormatError(f"{rel}, line {lineno}: image id {image_id} is not in images.txt")
            return scale[image_id]

        lines = []
        for image_id, (lineno, (x, y, w, h)) in boxes.items():
            sx, sy = factors(image_id, "bounding_boxes.txt", lineno)
            lines.append(f"{image_id} {x * sx:.1f} {y * sy:.1f} {w * sx:.1f} {h * sy:.1f}")
        _write_lines(work / "bounding_boxes.txt", lines)
        lines = []
        for (image_id, part), (lineno, (x, y, visible)) in locs.items():
            sx, sy = factors(image_id, "parts/part_locs.txt", lineno)
            lines.append(f"{image_id} {part} {x * sx:.1f} {y * sy:.1f} {int(visible)}")
        _write_lines(work / "parts" / "part_locs.txt", lines)
        for rel in COPIED:
            text = (src / rel).read_text(encoding="utf-8").replace("\r\n", "\n")
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text, encoding="utf-8")
        _write_lines(work / "image_sizes.txt", [f"{i} {new[0]} {new[1]}" for i, (_, new) in sizes.items()])
        rels = sorted("images/" + images[i][1][0] for i in ids)
        _write_lines(work / "MANIFEST.sha256",
                     [f"{hashlib.sha256((work / rel).read_bytes()).hexdigest()}  {rel}" for rel in rels])
        (work / "SOURCE.md").write_text(
            f"# CUB-200-2011 at {long_side} px\n\nMade by `python -m tinyinterp download-cub "
            f"--long-side {long_side}` from `{src.name}`: how, in tinyinterp/data/download.py.\n"
            f"`sha256sum -c MANIFEST.sha256` checks every JPEG.\n", encoding="utf-8")
        os.replace(work, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"\rwrote {dst}: {len(ids)} images, annotations scaled")
    return dst


def _write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ----------------------------------------------------------------------- command line

def add_download_parser(sub):
    p = add_parser(sub, "download-cub",
                   help="download CUB-200-2011, check and extract it, and make a fast small copy",
                   description="Download CUB-200-2011 into DIR (DIR/CUB_200_2011.tgz, checked "
                               "by its MD5), extract it (DIR/CUB_200_2011) and, with "
                               "--long-side N, write a downscaled copy DIR/cub200_N. Run it "
                               "again after an interruption: it goes on where it stopped.")
    p.add_argument("dir", metavar="DIR", help="where the download and the dataset go")
    p.add_argument("--long-side", type=int_at_least(16), metavar="N",
                   help="also write DIR/cub200_N, every image's longer side N px, annotations "
                        "scaled (160: all of CUB loads in seconds; default: no copy)")
    p.add_argument("--url", default=CUB_URL, help="where to download CUB_200_2011.tgz from "
                                                  "(http(s):// or file://)")
    p.add_argument("--md5", default=CUB_MD5, type=md5_hex, help="the MD5 the download must have "
                                                                 "(32 hex digits)")
    p.set_defaults(func=cmd_download)
    return p


def cmd_download(args):
    folder = Path(args.dir)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: a file, not a folder")
    tgz = folder / TARBALL
    if not (folder / FOLDER / "images.txt").is_file():
        fetch(args.url, tgz, args.md5)
    cub = extract(tgz, folder)
    data = cub
    if args.long_side:
        data = downscale(cub, folder / f"cub200_{args.long_side}", args.long_side)
    print(f"done: python -m tinyinterp train --data {data} ...; with TINYINTERP_DATA={folder} "
          f"the tests, lessons and studies find it" + (f" ({tgz} may be deleted)" if tgz.is_file() else ""))
    return 0
