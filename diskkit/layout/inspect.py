"""inspect_layout(): the partition table, filesystems and LVM of a disk, from its bytes.

Works through any Reader (file, qcow2, NBD, RBD): nothing is attached or activated.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from diskkit.errors import ImageError, UserError
from diskkit.findings import Evidence, Finding, Severity
from diskkit.layout import filesystems, gpt, mbr
from diskkit.layout.model import Filesystem, Partition
from diskkit.readers.base import Extent, Reader, SliceReader

if TYPE_CHECKING:  # imported where a PV is found: a disk without LVM does not load it
    from diskkit.layout import lvm


@dataclass(frozen=True)
class Layout:
    """What is on a disk. ``table`` is "mbr", "gpt" or None; offsets are disk bytes."""

    table: str | None
    sector_size: int
    partitions: tuple[Partition, ...]
    filesystems: tuple[Filesystem, ...]
    lvm: lvm.LvmInfo | None
    findings: tuple[Finding, ...]
    disk_size: int
    #: GPT disk GUID, or the MBR disk signature as 8 hex digits.
    disk_id: str | None = None
    #: The MBR next to a GPT: "protective", "hybrid" or "missing"; None without GPT.
    pmbr: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The keys ``info --json`` carries (docs/json.md, "Layout")."""
        return {
            "partition_table": self.table,
            "sector_size": self.sector_size,
            "disk_size": self.disk_size,
            "disk_id": self.disk_id,
            "protective_mbr": self.pmbr,
            "partitions": [p.to_dict() for p in self.partitions],
            "filesystems": [f.to_dict() for f in self.filesystems],
            "lvm": self.lvm.to_dict() if self.lvm else None,
        }

    def partition(self, number: int) -> Partition | None:
        """The partition numbered ``number`` (as sfdisk and the kernel number them)."""
        return next((p for p in self.partitions if p.number == number), None)


class ConcatReader(Reader):
    """Pieces ``(start, length)`` of a parent reader, read as one sequence (an LV)."""

    def __init__(self, parent: Reader, pieces: list[tuple[int, int]], name: str) -> None:
        self.parent = parent
        self.pieces = pieces
        self.name = name
        self._starts: list[int] = []
        pos = 0
        for _, length in pieces:
            self._starts.append(pos)
            pos += length
        self.size = pos

    def _spans(self, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(logical offset, parent offset, length) of each piece ``[offset, +length)`` hits."""
        i = bisect.bisect_right(self._starts, offset) - 1
        end = offset + length
        while offset < end and i < len(self.pieces):
            pstart, plen = self.pieces[i]
            inner = offset - self._starts[i]
            n = min(plen - inner, end - offset)
            yield offset, pstart + inner, n
            offset += n
            i += 1

    def _read(self, offset: int, length: int) -> bytes:
        out = b"".join(self.parent.read(p, n) for _, p, n in self._spans(offset, length))
        return out + b"\0" * (length - len(out))  # pieces past the parent's end read as zeros

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        end = self.size if length is None else min(self.size, offset + length)
        for lo, po, n in self._spans(offset, max(0, end - offset)):
            for ext in self.parent.extents(po, n):
                yield Extent(lo + ext.offset - po, ext.length, ext.data)


def partition_reader(reader: Reader, partition: Partition) -> Reader:
    """A reader over one partition (clipped to the disk)."""
    return SliceReader(reader, partition.start, partition.size,
                       name=f"{reader.name} partition {partition.number}")


def lv_reader(reader: Reader, layout: Layout, path: str) -> Reader:
    """A reader over the linear LV "vg/lv" of ``layout`` (built over ``reader``'s bytes)."""
    found = None
    for vg in layout.lvm.vgs if layout.lvm else ():
        for lv in vg.lvs:
            if path in (lv.path, lv.name):
                found = (vg, lv)
                break
    if found is None:
        raise UserError(f"no logical volume {path!r} on {reader.name}", code="no-such-lv")
    from diskkit.layout import lvm

    pieces = lvm.lv_pieces(*found)
    return ConcatReader(reader, pieces, f"{reader.name} lv {found[1].path}")


def _fs(reader: Reader, location: str, offset: int | None) -> Filesystem | None:
    p = filesystems.probe(reader)
    if p is None:
        return None
    return Filesystem(p.type, location, offset, p.size, p.uuid, p.label, p.details)


def _table(reader: Reader) -> tuple[str | None, int, tuple[Partition, ...], list[Finding],
                                    str | None, str | None]:
    sector0 = reader.read(0, 512)
    ss = gpt.detect_sector_size(reader)
    if ss is None and mbr.has_signature(sector0) and any(
            e.type == 0xEE for e in mbr.parse_entries(sector0)):
        ss = gpt.detect_from_backup(reader)  # a protective MBR, the primary GPT wiped
    if ss is not None:
        t = gpt.parse_gpt(reader, ss)
        findings = list(t.findings)
        pmbr = "missing"
        if mbr.has_signature(sector0):
            entries = mbr.parse_entries(sector0)
            used = [e for e in entries if not e.empty]
            if any(e.type == 0xEE for e in used):
                pmbr = "protective" if len(used) == 1 else "hybrid"
        if pmbr == "missing":
            findings.append(Finding(
                "gpt-protective-mbr-missing", Severity.WARNING,
                "the disk has a GPT but sector 0 has no protective 0xEE entry: UEFI firmware "
                "(OVMF) ignores such a GPT", (Evidence("MBR table", 0x1BE, sector0[0x1BE:0x1FE],
                                                      "disk"),),
                "sgdisk --zap (careful) or gdisk: x, n (new protective MBR), w"))
        elif pmbr == "hybrid":
            findings.append(Finding(
                "mbr-hybrid", Severity.INFO,
                "the MBR is hybrid: it lists partitions next to the GPT guard entry",
                (Evidence("MBR table", 0x1BE, sector0[0x1BE:0x1FE], "disk"),), None))
        return "gpt", ss, t.partitions, findings, t.header.disk_guid, pmbr
    if mbr.looks_like_table(sector0):
        t2 = mbr.parse_mbr(reader, 512)
        if t2.protective:
            t2 = replace(t2, findings=(*t2.findings, Finding(
                "gpt-missing", Severity.ERROR,
                "sector 0 is a protective MBR (type 0xEE) but there is no GPT, neither the "
                "primary header nor the backup: the partitions are lost",
                (Evidence("MBR table", 0x1BE, sector0[0x1BE:0x1FE], "disk"),),
                "recover the partitions with testdisk, or restore a backup of the table")))
        return "mbr", 512, t2.partitions, list(t2.findings), f"{t2.disk_signature:08x}", None
    return None, 512, (), [], None, None


def _disk_filesystems(reader: Reader, table: str | None,
                      parts: tuple[Partition, ...] | list[Partition]) -> list[Filesystem]:
    """Filesystems on the whole disk (no table; a hybrid ISO) and on each partition."""
    fss: list[Filesystem] = []
    if table is None:
        fs = _fs(reader, "disk", 0)
        return [fs] if fs else []
    iso = filesystems.probe_iso9660(reader)  # hybrid ISOs: the disk is also an ISO
    if iso:
        fss.append(Filesystem(iso.type, "disk", 0, iso.size, iso.uuid, iso.label,
                              iso.details))
    for p in parts:
        if p.kind == "extended" or p.start >= reader.size:
            continue
        fs = _fs(partition_reader(reader, p), f"partition {p.number}", p.start)
        if fs and not (p.start == 0 and fss and fss[0].type == fs.type):
            fss.append(fs)  # (an isohybrid partition 1 at 0 is the disk's ISO again)
    return fss


def _lvm(reader: Reader, fss: list[Filesystem], findings: list[Finding]
         ) -> tuple[Any, list[Filesystem]]:
    """LVM metadata of the PVs among ``fss`` and the filesystems on its LVs."""
    if not any(fs.type == "LVM2_member" for fs in fss):
        return None, []
    from diskkit.layout import lvm

    labels = []
    for fs in fss:
        if fs.type == "LVM2_member" and fs.offset is not None:
            size = fs.size or reader.size - fs.offset
            lab = lvm.read_label(reader, fs.offset, size, fs.location)
            if lab:
                labels.append(lab)
    if not labels:
        return None, []
    info, lvm_findings = lvm.parse_lvm(reader, labels)
    findings += lvm_findings
    out: list[Filesystem] = []
    for vg in info.vgs:
        for lv in vg.lvs:
            try:
                pieces = lvm.lv_pieces(vg, lv)
            except ImageError:
                continue
            lr = ConcatReader(reader, pieces, f"{reader.name} lv {lv.path}")
            lv_fs = _fs(lr, f"lv {lv.path}", pieces[0][0] if len(pieces) == 1 else None)
            if lv_fs:
                out.append(lv_fs)
    return info, out


def inspect_layout(reader: Reader) -> Layout:
    """Partition table, filesystems (on partitions, LVs or the whole disk) and LVM of
    ``reader``. Problems of the image become findings; an unreadable structure ImageError."""
    table, ss, parts, findings, disk_id, pmbr = _table(reader)
    fss = _disk_filesystems(reader, table, parts)
    info, lv_fss = _lvm(reader, fss, findings)
    fss += lv_fss
    for fs in fss:
        if fs.details.get("needs_recovery"):
            findings.append(Finding(
                "ext-journal-needs-recovery", Severity.WARNING,
                f"the {fs.type} filesystem on {fs.location} was not cleanly unmounted: its "
                "journal needs recovery (a read-only mount must skip it: -o ro,noload)",
                (Evidence("s_feature_incompat has RECOVER (0x4)", None, None),),
                "run e2fsck -p on it, or boot the guest once",
                {"location": fs.location}))
    return Layout(table, ss, parts, tuple(fss), info, tuple(findings), reader.size, disk_id,
                  pmbr)
