"""Commands users reach for (issue #16 item 6): ``fsu parts`` prints a partition table as
``sfdisk -l`` does, ``fsu diff IMG1 PATH IMG2 PATH`` compares two images."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fsu.conftest import fsu, need, ok, run
from tests.fsu.test_partitions import gpt_disk, mbr_disk


def test_parts_gpt_and_mbr(tmp_path: Path, ext4_master: Path, fat_master: Path) -> None:
    disk = gpt_disk(tmp_path / "gpt.img", [ext4_master, fat_master])
    out = ok(fsu("parts", disk))
    assert "Disklabel type: gpt" in out
    lines = [line for line in out.splitlines() if line.startswith(f"{disk}%")]
    assert len(lines) == 2
    assert "ext2/ext3/ext4" in lines[0] and "FAT" in lines[1]
    data = json.loads(ok(fsu("parts", "--json", disk)))
    assert [p["number"] for p in data["partitions"]] == [1, 2]
    start = data["partitions"][0]["start"]
    need("sfdisk")
    sf = json.loads(run("sfdisk", "--json", disk).stdout)["partitiontable"]
    assert [p["start"] for p in sf["partitions"]] == [p["start"] for p in data["partitions"]]
    assert start == 2048
    # the device names it prints are what the other commands take
    assert "hostname" in ok(fsu("ls", f"{disk}%1", "/etc"))
    mdisk = mbr_disk(tmp_path / "mbr.img", [ext4_master])
    out = ok(fsu("parts", mdisk))
    assert "Disklabel type: dos" in out and "83 Linux" in out


def test_parts_without_a_table(ext4_master: Path) -> None:
    out = ok(fsu("parts", ext4_master))
    assert "No partition table" in out and "ext2/ext3/ext4" in out


def test_partitioned_disk_points_to_parts(tmp_path: Path, ext4_master: Path) -> None:
    disk = mbr_disk(tmp_path / "mbr.img", [ext4_master])
    res = fsu("info", disk)
    assert res.returncode == 2
    assert f"{disk}%N" in res.stderr and f"fsu parts {disk}" in res.stderr


def test_diff_two_images(tmp_path: Path, ext4_img: Path, ext4_master: Path) -> None:
    ok(fsu("write", ext4_img, "/etc/hostname", input="changed\n"))
    ok(fsu("mkdir", ext4_img, "/new"))
    res = fsu("diff", ext4_master, "/", ext4_img, "/")
    assert res.returncode == 1
    assert f"Only in {ext4_img}:/: new" in res.stdout
    assert f"--- {ext4_master}:/etc/hostname" in res.stdout and "+changed" in res.stdout
    assert ok(fsu("diff", ext4_master, "/etc", ext4_master, "/etc")) == ""
    res = fsu("diff", "-q", ext4_master, "/bin", ext4_img, "/bin")
    assert res.returncode == 0
