"""The format sample recipes build, and ``diskkit check`` says what each one expects."""

from __future__ import annotations

import json

import pytest

from sample_images.recipes.formats import RECIPES
from tests.cli.test_info_check import diskkit


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("samples")
    for r in RECIPES:
        r.build(d / r.name)
    return d


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_sample_checks_as_expected(built, recipe):
    r = diskkit("check", built / recipe.name, "--disk-format", recipe.disk_format, "--json")
    assert r.returncode in (0, 1), r.stderr
    out = json.loads(r.stdout)
    assert out["format"] == recipe.expected["format"]
    assert sorted({f["code"] for f in out["findings"]}) == sorted(recipe.expected["codes"])
    assert r.returncode == (0 if not recipe.expected["codes"] else 1)
