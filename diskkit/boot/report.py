"""The boot part of ``diskkit info``: the ``boot`` JSON section and a few human lines."""

from __future__ import annotations

from typing import Any

from diskkit.units import human_size


def boot_lines(boot: dict[str, Any]) -> list[str]:
    """Short human lines for a ``boot`` section (as in ``BootInfo.to_dict()``)."""
    if "error" in boot and "mbr" not in boot:
        return [f"boot: not read: {boot['error']}"]
    lines = ["boot:"]
    mbr = boot.get("mbr")
    if mbr:
        sig = "55 AA" if mbr["signature"] else "no 55 AA signature"
        lines.append(f"  MBR: {mbr['description']} ({sig})")
    for v in boot.get("vbrs", []):
        if v["loader"] != "none":
            lines.append(f"  {v['where']}: {v['description']}")
    for g in boot.get("grub", []):
        core = g["core"]
        if core["error"]:
            lines.append(f"  GRUB ({g['where']}): core.img at sector {core['sector']}: "
                         f"{core['error']}")
            continue
        t = g.get("target") or {}
        where = t.get("lv") or (f"partition {t['partition_number']}"
                                if t.get("partition_number") else t.get("kind", "?"))
        state = "missing" if t.get("exists") is False else (
            "grub.cfg found" if t.get("grub_cfg") else
            "no grub.cfg" if t.get("grub_cfg") is False else "not looked into")
        lines.append(f"  GRUB ({g['where']}): core.img at sector {core['sector']} "
                     f"({g['core_location']}), prefix {core['prefix']} -> {where}: {state}")
        lines.append(f"    modules: {', '.join(core['modules'])}")
    e = boot.get("eltorito")
    if e and e.get("catalog_present"):
        ents = ", ".join(f"{x['platform']}{'' if x['bootable'] else ' (not bootable)'} "
                         f"at LBA {x['load_rba']}" for x in e["entries"])
        lines.append(f"  El Torito: platform {e['validation_platform']}; {ents}"
                     + ("; hybrid MBR" if e["hybrid_mbr"] else "")
                     + ("; hybrid GPT" if e["hybrid_gpt"] else "") + ("; UDF" if e["udf"] else ""))
    for esp in boot.get("esp", []):
        loaders = ", ".join(f"{x['path']} ({x['machine'] or 'not PE'}, {human_size(x['size'])})"
                            for x in esp["loaders"]) or "no loaders"
        lines.append(f"  ESP {esp['where']} (FAT{esp['fat_bits'] or '?'}): {loaders}")
    bbp = boot.get("bios_boot_partition")
    if bbp:
        lines.append(f"  BIOS boot partition: partition {bbp['number']}")
    return lines
