"""Build every sample image (``python -m sample_images.build [--out DIR] [--only NAME...]``).

Recipes come from ``sample_images/recipes/*.py``. Images already built by the same recipe
version are kept, so a second run is quick. Writes ``manifest.json`` beside the images.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time

from sample_images.recipe import Recipe

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"


def all_recipes() -> list[Recipe]:
    """Every recipe of every module in sample_images/recipes, in module then list order."""
    recipes: list[Recipe] = []
    for mod in sorted((HERE / "recipes").glob("*.py")):
        if mod.stem.startswith("_"):
            continue
        module = importlib.import_module(f"sample_images.recipes.{mod.stem}")
        recipes.extend(getattr(module, "RECIPES", []))
    names = [r.name for r in recipes]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SystemExit(f"duplicate sample names: {sorted(dupes)}")
    return recipes


def build(out: pathlib.Path = DEFAULT_OUT, only: list[str] | None = None) -> list[dict]:
    """Build the samples into ``out``; return the manifest entries."""
    out.mkdir(parents=True, exist_ok=True)
    stamps_path = out / ".stamps.json"
    stamps = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
    manifest = []
    for recipe in all_recipes():
        if only and recipe.name not in only:
            continue
        path = out / recipe.name
        if not (path.exists() and stamps.get(recipe.name) == recipe.version):
            started = time.monotonic()
            tmp = out / (recipe.name + ".part")
            tmp.unlink(missing_ok=True)
            recipe.build(tmp)
            tmp.rename(path)
            stamps[recipe.name] = recipe.version
            stamps_path.write_text(json.dumps(stamps, indent=1))
            print(f"built {recipe.name} in {time.monotonic() - started:.1f} s", file=sys.stderr)
        manifest.append({
            "name": recipe.name,
            "path": str(path),
            "description": recipe.description,
            "disk_format": recipe.disk_format,
            "expected": recipe.expected,
        })
    if not only:
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    manifest = build(args.out, args.only)
    print(f"{len(manifest)} sample images in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
