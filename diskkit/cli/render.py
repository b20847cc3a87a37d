"""The disk drawn to scale, the way a partition editor shows it: a bar in the terminal (rich)
and the same picture as SVG (``diskkit info --svg FILE``).

The picture is computed once (:func:`segments`): partitions (logical ones inside their
extended partition), the free gaps between them, and for each LVM volume group a second row
with its logical volumes. Both renderers draw those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from rich.console import Console
from rich.text import Text

from diskkit.cli.output import human_size
from diskkit.errors import UserError
from diskkit.layout.inspect import Layout

#: One colour per content type (terminal style name, SVG fill).
COLOURS: dict[str, tuple[str, str]] = {
    "ext2": ("blue", "#3b6fd0"), "ext3": ("blue", "#3b6fd0"), "ext4": ("blue", "#3b6fd0"),
    "xfs": ("magenta", "#a347c2"), "btrfs": ("bright_magenta", "#d07cd8"),
    "vfat": ("green", "#3aa856"), "ntfs": ("cyan", "#2aa0b8"), "swap": ("red", "#cc4444"),
    "LVM2_member": ("yellow", "#d2a521"), "crypto_LUKS": ("bright_black", "#777777"),
    "iso9660": ("white", "#bbbbbb"), "squashfs": ("bright_blue", "#7b9cf0"),
    "": ("grey50", "#999999"), "free": ("grey23", "#e8e8e8"),
}


@dataclass(frozen=True)
class Segment:
    """One box of a row: ``[start, start+size)`` in bytes of the row's whole."""

    start: int
    size: int
    title: str
    content: str
    note: str


@dataclass(frozen=True)
class Row:
    """A bar: ``segments`` over ``total`` bytes."""

    title: str
    total: int
    segments: tuple[Segment, ...]


def _fs_of(layout: Layout, location: str) -> tuple[str, str]:
    fs = next((f for f in layout.filesystems if f.location == location), None)
    if fs is None:
        return "", ""
    return fs.type, fs.label or ""


def _with_gaps(items: list[Segment], total: int) -> tuple[Segment, ...]:
    out: list[Segment] = []
    pos = 0
    for s in sorted(items, key=lambda s: s.start):
        if s.start - pos > max(1 << 20, total // 200):
            out.append(Segment(pos, s.start - pos, "free", "free", human_size(s.start - pos)))
        out.append(s)
        pos = max(pos, s.start + s.size)
    if total - pos > max(1 << 20, total // 200):
        out.append(Segment(pos, total - pos, "free", "free", human_size(total - pos)))
    return tuple(out)


def segments(layout: Layout) -> list[Row]:
    """The rows of the picture: the disk, then one per volume group."""
    items: list[Segment] = []
    if layout.table is None:
        kind, label = _fs_of(layout, "disk")
        items.append(Segment(0, layout.disk_size, kind or "unpartitioned", kind,
                             label or human_size(layout.disk_size)))
    for p in layout.partitions:
        if p.kind == "extended":
            continue
        kind, label = _fs_of(layout, f"partition {p.number}")
        note = " ".join(x for x in (kind or p.type_name, label, human_size(p.size)) if x)
        note += f" at {p.start}"
        items.append(Segment(p.start, p.size, str(p.number), kind, note))
    title = f"disk ({layout.table or 'no partition table'}, {human_size(layout.disk_size)})"
    whole, whole_label = _fs_of(layout, "disk")
    if layout.table and whole:  # a hybrid ISO: the disk is also a filesystem
        title += f"; the whole disk is also {whole} {whole_label}".rstrip()
    rows = [Row(title, layout.disk_size, _with_gaps(items, layout.disk_size))]
    for vg in layout.lvm.vgs if layout.lvm else ():
        total = sum(p.pe_count for p in vg.pvs) * vg.extent_size
        lvs = []
        pos = 0
        for lv in vg.lvs:
            kind, label = _fs_of(layout, f"lv {lv.path}")
            note = " ".join(x for x in (kind, label, human_size(lv.size)) if x)
            lvs.append(Segment(pos, lv.size, lv.name, kind, note))
            pos += lv.size
        rows.append(Row(f"VG {vg.name} ({human_size(total)})", max(total, pos),
                        _with_gaps(lvs, max(total, pos))))
    return rows


def _columns(row: Row, width: int) -> list[int]:
    """Character widths of each segment: to scale, at least 1, summing to ``width``."""
    raw = [max(1, round(s.size * width / max(row.total, 1))) for s in row.segments]
    while sum(raw) > width and max(raw) > 1:
        raw[raw.index(max(raw))] -= 1
    if raw and sum(raw) < width:
        raw[raw.index(max(raw))] += width - sum(raw)
    return raw


def print_bar(layout: Layout, console: Console, width: int | None = None) -> None:
    """Draw the layout as coloured bars, with a legend line per segment."""
    width = width or max(20, min(console.width, 120) - 2)
    for row in segments(layout):
        console.print(Text(row.title, style="bold"), no_wrap=True, overflow="ellipsis")
        bar = Text()
        for seg, cols in zip(row.segments, _columns(row, width), strict=True):
            style = COLOURS.get(seg.content, COLOURS[""])[0]
            label = seg.title[: max(0, cols)].center(cols)
            bar.append(label, style=f"black on {style}" if seg.content != "free" else "dim")
        console.print(bar, no_wrap=True, overflow="crop")
        for seg in row.segments:
            if seg.content == "free":
                continue
            style = COLOURS.get(seg.content, COLOURS[""])[0]
            line = Text("  ")
            line.append("\u2588\u2588", style=style)
            line.append(f" {seg.title}: {seg.note}")
            console.print(line, no_wrap=True, overflow="ellipsis")


def render_svg(layout: Layout, width: int = 800) -> str:
    """The same picture as :func:`print_bar`, as a standalone SVG document."""
    bar_h, gap, legend_h = 36, 18, 16
    rows = segments(layout)
    y = 10
    parts: list[str] = []
    for row in rows:
        parts.append(f'<text x="10" y="{y + 12}" font-weight="bold">{escape(row.title)}</text>')
        y += 18
        x = 10.0
        for seg in row.segments:
            w = max(2.0, seg.size * width / max(row.total, 1))
            fill = COLOURS.get(seg.content, COLOURS[""])[1]
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                         f'fill="{fill}" stroke="#333"><title>{escape(seg.title)}: '
                         f'{escape(seg.note)}</title></rect>')
            if w > 8 * len(seg.title):
                parts.append(f'<text x="{x + w / 2:.1f}" y="{y + bar_h / 2 + 4}" '
                             f'text-anchor="middle">{escape(seg.title)}</text>')
            x += w
        y += bar_h + 6
        for seg in row.segments:
            if seg.content == "free":
                continue
            fill = COLOURS.get(seg.content, COLOURS[""])[1]
            parts.append(f'<rect x="14" y="{y + 3}" width="10" height="10" fill="{fill}"/>'
                         f'<text x="30" y="{y + 12}">{escape(seg.title)}: {escape(seg.note)}'
                         "</text>")
            y += legend_h
        y += gap
    height = y + 10
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 20}" height="{height}" '
            f'font-family="sans-serif" font-size="12">\n' + "\n".join(parts) + "\n</svg>\n")


#: The report keys the layout adds (drawn as the bar, not printed as text).
LAYOUT_KEYS = frozenset({"partition_table", "sector_size", "disk_size", "disk_id",
                         "protective_mbr", "partitions", "filesystems", "lvm"})


def write_svg(layout: Layout | None, path: str) -> None:
    """Write :func:`render_svg` to ``path``; UserError when there is no layout or no file."""
    if layout is None:
        raise UserError("no disk layout could be read from this image, so there is no SVG "
                        "to write", code="no-layout")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_svg(layout))
    except OSError as exc:
        raise UserError(f"{path}: cannot write the SVG: {exc.strerror}",
                        code="cannot-write") from None
