"""``diskkit find``: guest paths by name glob and kind, with no root and no mount where
possible."""

from __future__ import annotations

from diskkit.cli.output import emit_json


def find(target: str, top: str = "/", name: str | None = None, kind: str | None = None,
         max_depth: int = 64, limit: int = 10_000, partition: int | None = None,
         lv: str | None = None, os_root: bool = False, backend: str = "auto",
         json_out: bool = False) -> int:
    """Find files in the image (docs/json.md, ``find --json``)."""
    from diskkit.cli.mount import _guarded, _sel, _with_selection
    from diskkit.guest.fs import service

    sel = _sel(partition, lv, os_root, backend)
    found = _guarded(lambda: _with_selection(
        target, sel, lambda s: service.find_paths(target, top, name=name, kind=kind,
                                                  max_depth=max_depth, max_results=limit,
                                                  **s)))
    if json_out:
        emit_json({"top": top, "name": name, "type": kind, "results": found,
                   "truncated": len(found) >= limit})
        return 0
    from diskkit.cli.output import console

    for x in found:
        console.print(x["path"] + ("/" if x["kind"] == "dir" else ""), markup=False,
                      soft_wrap=True)
    return 0
