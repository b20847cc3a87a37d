"""LVM2 without device-mapper: PV labels, the metadata area, VGs/LVs, and LV byte maps.

On-disk format (lvm2 lib/label/label.h, lib/format_text/layout.h):
- label_header in one of sectors 0-3: "LABELONE", sector u64, crc u32, offset u32 (of the
  pv_header in this sector), type "LVM2 001". pv_header: PV UUID (32 chars), device size u64,
  then two zero-terminated lists of disk_locn {offset u64, size u64}: data areas, then
  metadata areas (byte offsets from the start of the PV).
- mda_header at a metadata area: checksum u32, magic "\\x20LVM2 x[5A%r0N*>", version u32,
  start u64, size u64, then raw_locn {offset u64, size u64, checksum u32, flags u32}: the first
  one locates the current text metadata, relative to the area, in a circular buffer that
  wraps back to just after the 512-byte header.
- The text (see :mod:`diskkit.layout.lvm_text`) gives extent_size (sectors), each PV's
  pe_start (sectors) and each LV's segments; a "striped" segment with stripe_count 1 is
  linear: LV extent e maps to PV byte pe_start*512 + (pv_extent + e) * extent_size*512.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from diskkit.errors import ImageError
from diskkit.findings import Evidence, Finding, Severity
from diskkit.layout.lvm_text import parse_text
from diskkit.readers.base import Reader

MDA_MAGIC = b"\x20LVM2 x[5A%r0N*>"
MDA_HEADER_SIZE = 512
#: lib/format_text/layout.h INITIAL_CRC: the seed of every LVM checksum.
INITIAL_CRC = 0xF597A6CF
#: Bounds: metadata text over 16 MiB, or more than 64 listed areas, is hostile.
MAX_TEXT = 16 << 20
MAX_AREAS = 64


@dataclass(frozen=True)
class PvLabel:
    """The label of one PV found on the disk; ``offset`` is where the PV starts on it."""

    uuid: str
    offset: int
    size: int
    device_size: int
    metadata_areas: tuple[tuple[int, int], ...]
    location: str


@dataclass(frozen=True)
class Segment:
    """One LV segment: LV extents [start_extent, +extent_count) on ``stripes`` (pv, extent)."""

    start_extent: int
    extent_count: int
    type: str
    stripes: tuple[tuple[str, int], ...]

    @property
    def linear(self) -> bool:
        """True when the segment maps to one contiguous PV range."""
        return self.type in ("striped", "linear") and len(self.stripes) == 1


@dataclass(frozen=True)
class LogicalVolume:
    """An LV: name, UUID, size in bytes, segments, and whether it is mapped linearly."""

    vg: str
    name: str
    uuid: str
    size: int
    segments: tuple[Segment, ...]
    status: tuple[str, ...]

    @property
    def linear(self) -> bool:
        """True when every segment is linear (so its bytes can be read through PVs)."""
        return all(s.linear for s in self.segments)

    @property
    def path(self) -> str:
        """"vg/lv"."""
        return f"{self.vg}/{self.name}"


@dataclass(frozen=True)
class PhysicalVolume:
    """A PV as the VG metadata lists it, and where it is on this disk (None: not here)."""

    key: str
    uuid: str
    device: str
    pe_start: int
    pe_count: int
    disk_offset: int | None
    location: str | None


@dataclass(frozen=True)
class VolumeGroup:
    """A VG from the newest metadata copy found."""

    name: str
    uuid: str
    seqno: int
    extent_size: int
    pvs: tuple[PhysicalVolume, ...]
    lvs: tuple[LogicalVolume, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md)."""
        return {
            "name": self.name, "uuid": self.uuid, "seqno": self.seqno,
            "extent_size": self.extent_size,
            "pvs": [{"name": p.key, "uuid": p.uuid, "device": p.device,
                     "pe_start": p.pe_start, "pe_count": p.pe_count,
                     "offset": p.disk_offset, "location": p.location} for p in self.pvs],
            "lvs": [{"name": lv.name, "uuid": lv.uuid, "size": lv.size, "linear": lv.linear,
                     "status": list(lv.status),
                     "segments": [{"start_extent": s.start_extent,
                                   "extent_count": s.extent_count, "type": s.type,
                                   "stripes": [list(x) for x in s.stripes]}
                                  for s in lv.segments]} for lv in self.lvs],
        }


@dataclass(frozen=True)
class LvmInfo:
    """Every VG whose PVs are on this disk."""

    vgs: tuple[VolumeGroup, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md)."""
        return {"vgs": [vg.to_dict() for vg in self.vgs]}

    def find_lv(self, path: str) -> LogicalVolume | None:
        """The LV named "vg/lv" (or just "lv" when unique)."""
        for vg in self.vgs:
            for lv in vg.lvs:
                if path in (lv.path, lv.name):
                    return lv
        return None


def read_label(r: Reader, offset: int, size: int, location: str) -> PvLabel | None:
    """The PV label of the region ``[offset, offset+size)`` of ``r``, or None."""
    for sector in range(4):
        lab = r.read(offset + sector * 512, 512)
        if len(lab) < 512 or lab[:8] != b"LABELONE" or lab[24:32] != b"LVM2 001":
            continue
        pos = struct.unpack_from("<I", lab, 20)[0]
        if not 32 <= pos <= 512 - 40:
            return None
        uuid_raw = lab[pos : pos + 32].decode("ascii", errors="replace")
        dev_size = struct.unpack_from("<Q", lab, pos + 32)[0]
        pos += 40
        lists: list[list[tuple[int, int]]] = [[], []]
        for which in (0, 1):
            while pos + 16 <= 512 and len(lists[which]) < MAX_AREAS:
                off, sz = struct.unpack_from("<QQ", lab, pos)
                pos += 16
                if off == 0:
                    break
                lists[which].append((off, sz))
        u = uuid_raw
        uuid = "-".join((u[0:6], u[6:10], u[10:14], u[14:18], u[18:22], u[22:26], u[26:32]))
        return PvLabel(uuid, offset, size, dev_size, tuple(lists[1]), location)
    return None


def lvm_crc(data: bytes, initial: int = INITIAL_CRC) -> int:
    """LVM's checksum (lib/misc/crc.c calc_crc): CRC-32, polynomial 0xEDB88320, started at
    ``initial`` and without zlib's pre- and post-inversion."""
    return zlib.crc32(data, initial ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def read_metadata_text(r: Reader, pv: PvLabel, area: tuple[int, int]) -> str | None:
    """The current metadata text of one metadata area (following the circular wrap).

    None when the area holds no mda header or no metadata; :class:`ImageError` when the
    header or the text fails its checksum (LVM itself then ignores the copy)."""
    start, size = pv.offset + area[0], area[1]
    hdr = r.read(start, MDA_HEADER_SIZE)
    if len(hdr) < MDA_HEADER_SIZE or hdr[4:20] != MDA_MAGIC:
        return None
    if lvm_crc(hdr[4:]) != struct.unpack_from("<I", hdr, 0)[0]:
        raise ImageError("the metadata area header fails its checksum",
                         code="bad-lvm-metadata")
    off, length, crc = struct.unpack_from("<QQI", hdr, 40)  # raw_locn[0]
    if length == 0 or size <= MDA_HEADER_SIZE or off >= size:
        return None
    if length > min(MAX_TEXT, size - MDA_HEADER_SIZE):
        raise ImageError(f"metadata text of {length} bytes does not fit its area",
                         code="bad-lvm-metadata")
    first = min(length, size - off)
    data = r.read(start + off, first)
    if first < length:  # wrapped: the rest is just after the header
        data += r.read(start + MDA_HEADER_SIZE, length - first)
    if lvm_crc(data) != crc:
        raise ImageError("the metadata text fails its checksum", code="bad-lvm-metadata")
    return data.split(b"\0", 1)[0].decode("utf-8", errors="replace")


#: Work bounds: PVs, LVs and segments of one VG (LVM's own limits are far below).
MAX_PVS = 4096
MAX_LVS = 16384
MAX_SEGMENTS = 65536


def _nat(value: Any, what: str) -> int:
    """``value`` as a non-negative integer below 2**64 (ImageError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ImageError(f"LVM metadata: {what} is {value!r}, not a non-negative integer",
                         code="bad-lvm-metadata")
    return value


def _vg(name: str, d: dict[str, Any], labels: dict[str, PvLabel]) -> VolumeGroup:
    pv_map, lv_map = d.get("physical_volumes"), d.get("logical_volumes")
    if (isinstance(pv_map, dict) and len(pv_map) > MAX_PVS) or \
            (isinstance(lv_map, dict) and len(lv_map) > MAX_LVS):
        raise ImageError(f"VG {name} lists more than {MAX_PVS} PVs or {MAX_LVS} LVs: work "
                         "bound hit, not parsed", code="work-bound-hit")
    nsegs = 0
    try:
        ext = _nat(d["extent_size"], "extent_size") * 512
        pvs = []
        for key, p in d.get("physical_volumes", {}).items():
            lab = labels.get(p["id"])
            pvs.append(PhysicalVolume(
                key, p["id"], str(p.get("device", "")), _nat(p["pe_start"], "pe_start") * 512,
                _nat(p["pe_count"], "pe_count"), lab.offset if lab else None,
                lab.location if lab else None))
        lvs = []
        for lname, lv in d.get("logical_volumes", {}).items():
            segs = []
            for sname, s in lv.items():
                if not (sname.startswith("segment") and isinstance(s, dict)):
                    continue
                nsegs += 1
                if nsegs > MAX_SEGMENTS:
                    raise ImageError(f"VG {name} has more than {MAX_SEGMENTS} LV segments: "
                                     "work bound hit, not parsed", code="work-bound-hit")
                raw = s.get("stripes", [])
                if not isinstance(raw, list) or len(raw) > 2 * MAX_PVS:
                    raise ImageError(f"LV {lname}: bad stripes list", code="bad-lvm-metadata")
                stripes = tuple((str(raw[i]), _nat(raw[i + 1], "a stripe's extent"))
                                for i in range(0, len(raw) - 1, 2))
                segs.append(Segment(_nat(s["start_extent"], "start_extent"),
                                    _nat(s["extent_count"], "extent_count"),
                                    str(s.get("type", "")), stripes))
            segs.sort(key=lambda s: s.start_extent)
            size = sum(s.extent_count for s in segs) * ext
            lvs.append(LogicalVolume(name, lname, str(lv.get("id", "")), size, tuple(segs),
                                     tuple(lv.get("status", []))))
        return VolumeGroup(name, str(d["id"]), int(d.get("seqno", 0)), ext, tuple(pvs),
                           tuple(lvs))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ImageError(f"LVM metadata of VG {name} is incomplete: {exc}",
                         code="bad-lvm-metadata") from None


def parse_lvm(r: Reader, labels: list[PvLabel]) -> tuple[LvmInfo, list[Finding]]:
    """VGs described by the metadata of the PVs in ``labels`` (the newest seqno wins)."""
    findings: list[Finding] = []
    by_uuid = {lab.uuid: lab for lab in labels}
    best: dict[str, VolumeGroup] = {}
    for lab in labels:
        for area in lab.metadata_areas:
            try:
                text = read_metadata_text(r, lab, area)
                if text is None:
                    continue
                doc = parse_text(text)
                for name, body in doc.items():
                    if isinstance(body, dict) and "physical_volumes" in body:
                        vg = _vg(name, body, by_uuid)
                        if vg.uuid not in best or vg.seqno > best[vg.uuid].seqno:
                            best[vg.uuid] = vg
            except ImageError as exc:
                findings.append(Finding(
                    "work-bound-hit" if exc.code == "work-bound-hit"
                    else "lvm-metadata-unreadable", Severity.WARNING,
                    f"LVM metadata on PV {lab.uuid} cannot be parsed: {exc.message}",
                    (Evidence("metadata area", lab.offset + area[0], None, "disk"),),
                    "vgcfgrestore from /etc/lvm/backup on the host that made it"))
    for vg in best.values():
        for pv in vg.pvs:
            if pv.disk_offset is None:
                findings.append(Finding(
                    "lvm-pv-missing", Severity.WARNING,
                    f"VG {vg.name} has PV {pv.uuid} ({pv.device}) that is not on this disk: "
                    "LVs that use it cannot be read from this image alone",
                    (), "inspect the VG's other disks as well",
                    {"vg": vg.name, "pv": pv.uuid}))
    return LvmInfo(tuple(sorted(best.values(), key=lambda v: v.name))), findings


def lv_pieces(vg: VolumeGroup, lv: LogicalVolume) -> list[tuple[int, int]]:
    """(disk offset, length) pieces of a linear LV in order; ImageError if not readable."""
    pvs = {p.key: p for p in vg.pvs}
    out: list[tuple[int, int]] = []
    for seg in lv.segments:
        if not seg.linear:
            raise ImageError(f"LV {lv.path} has a {seg.type} segment over {len(seg.stripes)} "
                             "PVs: only linear LVs can be read", code="lv-not-linear")
        pv = pvs.get(seg.stripes[0][0])
        if pv is None or pv.disk_offset is None:
            raise ImageError(f"LV {lv.path} uses a PV that is not on this disk",
                             code="lvm-pv-missing")
        start = pv.disk_offset + pv.pe_start + seg.stripes[0][1] * vg.extent_size
        out.append((start, seg.extent_count * vg.extent_size))
    return out
