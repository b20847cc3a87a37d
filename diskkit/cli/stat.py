"""``diskkit stat``: a guest file's metadata, read with no root and no mount where possible."""

from __future__ import annotations

import datetime as dt
import stat as st

from diskkit.cli.output import emit_json


def stat(target: str, path: str, no_follow: bool = False, partition: int | None = None,
         lv: str | None = None, os_root: bool = False, backend: str = "auto",
         json_out: bool = False) -> int:
    """Show a guest file's metadata (docs/json.md, ``stat --json``)."""
    from diskkit.cli.mount import _guarded, _sel, _with_selection
    from diskkit.guest.fs import service

    sel = _sel(partition, lv, os_root, backend)
    info = _guarded(lambda: _with_selection(
        target, sel, lambda s: service.stat_path(target, path, follow=not no_follow, **s)))
    if json_out:
        emit_json(info)
        return 0
    from diskkit.cli.output import console

    mtime = dt.datetime.fromtimestamp(info["mtime"], dt.UTC).isoformat() \
        if info["mtime"] is not None else "-"
    owner = "-" if info["uid"] is None else f"{info['uid']}:{info['gid']}"
    link = info["link_target"]
    lines = [f"  Path: {info['path']}" + (f" -> {link}" if link else ""),
             f"  Kind: {info['kind']}   Size: {info['size']}   "
             f"Mode: {st.filemode(int(info['mode'], 8))} ({info['mode']})   Owner: {owner}",
             f" Mtime: {mtime}   Inode: {info['inode'] if info['inode'] is not None else '-'}",
             f"    On: {info['fstype']} (read by {info['driver']})"]
    if info.get("realpath") and info["realpath"] != info["path"]:
        lines.insert(1, f"  Real: {info['realpath']}")
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)
    return 0
