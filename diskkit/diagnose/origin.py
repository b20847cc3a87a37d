"""Whose bytes cause it: for a Ceph clone (a Cinder volume made copy-on-write from a Glance
image's snapshot), diagnose each ancestor snapshot the same way; the farthest one that fails
with the same cause is where the problem was made, and its fix comes first (fix the Glance
image, then recreate the clone, or fix the clone itself second). The chain is
:func:`diskkit.rbd.chain.clone_chain`'s (the pipeline's ``rbd`` section)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from diskkit.findings import Finding
from diskkit.target import Target


def parent_target(t: Target, link: dict[str, Any]) -> Target:
    """The rbd: target of one ``rbd.parents`` entry, with the clone's credentials."""
    return Target(spec=f"rbd:{link['spec']}", kind="rbd", pool=link["pool"],
                  namespace=link.get("namespace"), image=link["image"],
                  snap=link["snapshot"], conf=t.conf, user=t.user, keyring=t.keyring)


def find_origin(t: Target, parents: list[dict[str, Any]], cause: Finding,
                judge: Callable[[Target], Any]) -> tuple[dict[str, Any], Any] | None:
    """(the farthest ancestor whose own diagnosis fails with ``cause.code``, that diagnosis),
    or None when the clone's own writes made the problem. ``judge`` diagnoses a target."""
    found = None
    for link in parents:  # nearest first
        if link.get("error"):
            break
        d = judge(parent_target(t, link))
        if d.will_boot is not False or not d.findings or d.findings[0].code != cause.code:
            break
        found = (link, d)
    return found


def attribute(cause: Finding, clone: str, link: dict[str, Any], parent_cause: Finding,
              ) -> Finding:
    """``cause`` rewritten to name the parent whose bytes make it, fix on the parent first."""
    spec = link["spec"]
    fix = (f"the problem is in the bytes of the parent {spec} (image {link['image']}, "
           f"snapshot {link['snapshot']}: the Glance image the volume was cloned from): fix "
           f"the parent first -- {parent_cause.fix or 'see its diagnosis'} (for an RBD image: "
           f"rbd export {spec} IMAGE, fix IMAGE, upload it as a new Glance image); then the "
           f"clone {clone}: create it again from the fixed image (openstack volume create "
           "--image NAME --size GB VOLUME), or apply the same fix to the volume itself")
    return replace(cause, message=f"{cause.message} (inherited from the parent {spec}: "
                   "every block the clone has not written reads the parent's)", fix=fix,
                   details={**cause.details, "origin": {"parent": spec, "pool":
                            link["pool"], "image": link["image"],
                            "snapshot": link["snapshot"]}})
