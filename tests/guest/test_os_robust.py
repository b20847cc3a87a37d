"""The guest parsers on arbitrary bytes: a bad guest file gives a result or a problem, never an
exception (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from diskkit.guest import bootcfg, identity, initramfs
from diskkit.guest.binfmt import elf_arch, pe_arch
from diskkit.guest.fstab import Resolver, parse_fstab
from diskkit.guest.packages import parse_apk_installed, parse_dpkg_status, rpm_header

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=2000)
GRUBISH = st.lists(st.sampled_from(["menuentry", "submenu", "'t'", '"x"', "{", "}", "\n", ";",
                                    "linux", "/k", "root=$r", "set", "default=1>0", "if",
                                    "fi", "then", "else", "\\", "'", '"', "${saved_entry}",
                                    "search", "--fs-uuid", "blscfg", "initrd", " "]),
                   max_size=300).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, GRUBISH), st.dictionaries(st.text(max_size=8), st.text(max_size=8)))
def test_grub_cfg_never_raises(text: str, env: dict[str, str]) -> None:
    g = bootcfg.parse_grub_cfg(text, "/boot/grub/grub.cfg", env)
    assert len(g.entries) <= bootcfg.MAX_ENTRIES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_binary_parsers_never_raise(data: bytes) -> None:
    bootcfg.parse_grubenv(data)
    elf_arch(data)
    pe_arch(data)
    rpm_header(data)
    listing = initramfs.list_initramfs(data, max_output=1 << 20)
    initramfs.summarize(listing)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=110, max_size=600))
def test_cpio_headers_never_raise(tail: bytes) -> None:
    initramfs.list_initramfs(b"070701" + tail, max_output=1 << 20)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_text_parsers_never_raise(text: str) -> None:
    identity.parse_os_release(text)
    identity.parse_version(text)
    parse_dpkg_status(text)
    parse_apk_installed(text)
    res = Resolver(None)
    for fields, _src in parse_fstab(text):
        if fields:
            res.resolve(fields[0])


def test_signed_or_spaced_cpio_fields_are_refused() -> None:
    """int() would take " +1_0" or "-00000C8": a negative name size must not walk backwards."""
    for field in (b"-00000C8", b" +1_0   ", b"0x000010"):
        head = b"070701" + b"00000000" * 11 + field + b"00000000"
        listing = initramfs.list_initramfs(head + b"x" * 300)
        assert listing.problem == "cpio header with non-hex fields"
