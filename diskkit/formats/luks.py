"""LUKS 1 and 2 (cryptsetup on-disk formats).

LUKS1 (big-endian): magic ``LUKS\\xba\\xbe`` @0, version u16 @6, cipher name @8, cipher mode
@40, hash @72, payload offset u32 @104 (sectors), key bytes u32 @108, UUID @168.
qemu's "luks" driver (LUKS1 only in qemu 7.2) exposes the payload: virtual size = file size -
payload offset. LUKS2: header size u64 @8, UUID @168, then a JSON area from 4096 whose
``segments`` give the payload offset ("size": "dynamic" runs to the end of the device).
"""

from __future__ import annotations

import json

from diskkit.findings import Severity
from diskkit.formats.base import Match, Source, ascii_field, finding, one, unpack

MAGIC = b"LUKS\xba\xbe"
#: LUKS2 headers are at most 4 MiB; we parse the JSON found in the first 64 KiB.
MAX_HDR = 4 << 20


def _luks2_offset(src: Source, hdr_size: int) -> int | None:
    if not 4096 < hdr_size <= MAX_HDR:
        return None
    text = src.head[4096:hdr_size].split(b"\0", 1)[0]
    try:
        meta = json.loads(text.decode("utf-8"))
        segs = meta["segments"]
        return min(int(s["offset"]) for s in segs.values())
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def probe(src: Source) -> Match | None:
    """A LUKS header, or None."""
    if src.head[:6] != MAGIC:
        return None
    version = one(">H", src.head, 6, "LUKS header")
    details: dict = {"version": version, "uuid": ascii_field(src.head[168:208])}
    if version == 1:
        cipher, mode, hashspec = unpack(">32s32s32s", src.head, 8, "LUKS1 header")
        payload, key_bytes = unpack(">II", src.head, 104, "LUKS1 header")
        details.update(cipher=ascii_field(cipher), cipher_mode=ascii_field(mode),
                       hash=ascii_field(hashspec), key_bytes=key_bytes)
        offset: int | None = payload * 512
    else:
        hdr_size = one(">Q", src.head, 8, "LUKS2 header")
        details["header_size"] = hdr_size
        offset = _luks2_offset(src, hdr_size)
    details["payload_offset"] = offset
    findings = [finding(
        "encrypted", Severity.WARNING,
        f"the image is LUKS{version}-encrypted: its content cannot be inspected or booted "
        "without the key", "make sure the consumer has the key (Barbican secret, "
        "--object secret,... for qemu)", [("LUKS magic", 0, src.head[:8])])]
    # Nova boots an image by handing the hypervisor its disk_format; LUKS is none of
    # Glance's, Nova holds no passphrase for an image, and qemu 7.2 reads LUKS1 only.
    why = ("Glance's inspector finds 'luks', which matches no disk_format, and Nova has no "
           "passphrase to open an image (encrypted disks boot only as Cinder encrypted "
           "volumes or Nova's own ephemeral encryption)")
    if version != 1:
        why += f"; LUKS{version} is also refused by oslo.utils and qemu cannot open it"
    findings.append(finding(
        "luks-image", Severity.ERROR, f"a LUKS{version} container cannot be uploaded and "
        f"booted as an image: {why}", "decrypt it on a trusted host and upload the plain "
        "disk (qemu-img convert --object secret,id=s,file=KEYFILE --image-opts "
        "driver=luks,key-secret=s,file.filename=IN -O qcow2 OUT.qcow2, LUKS1 only), or "
        "create an encrypted Cinder volume instead", [("LUKS version", 6, src.head[6:8])],
        version=version))
    if offset is None or offset > src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"LUKS payload offset {offset} is missing or past the end of the file",
            "refuse the image (truncated or hostile)", [("payload offset", 104, None)]))
        size = None
    else:
        size = src.size - offset
    return Match("luks", size, details, tuple(findings))
