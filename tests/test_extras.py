"""All extras install together (issue 13 item 5).

CI installs ``.[test,toxicity]`` into one virtual environment (``make test`` runs
``setup-toxicity``). These tests make that install prove the extras resolve side by side: the
``test`` extra must hold every requirement of every other extra (``toxicity`` aside: the Makefile
installs it into the same environment), each extra's distributions must be installed here at
versions its specifiers accept, and ``pip check`` must find no broken requirement among them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
TEST_EXTRA = "test"
SEPARATE_EXTRA = "toxicity"  # installed beside the test extra by `make setup-toxicity`
SETUP_TARGET = "setup-toxicity"


def extras(pyproject: dict) -> dict[str, list[Requirement]]:
    return {name: [Requirement(r) for r in reqs]
            for name, reqs in pyproject["project"].get("optional-dependencies", {}).items()}


def missing_from_test_extra(pyproject: dict) -> list[str]:
    """``extra: requirement`` for each requirement of another extra (not toxicity) that the test
    extra lacks, or holds with other specifiers or markers."""
    all_extras = extras(pyproject)
    held = {(canonicalize_name(r.name), str(r.specifier), str(r.marker), frozenset(r.extras))
            for r in all_extras.get(TEST_EXTRA, [])}
    missing = []
    for name, reqs in all_extras.items():
        if name in (TEST_EXTRA, SEPARATE_EXTRA):
            continue
        for r in reqs:
            if (canonicalize_name(r.name), str(r.specifier), str(r.marker), frozenset(r.extras)) not in held:
                missing.append(f"{name}: {r}")
    return missing


def setup_target_installs(makefile: str, target: str) -> list[str]:
    """The ``.[...]`` extras that ``make TARGET``'s recipe installs with the venv's pip."""
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n?)+)", makefile, re.MULTILINE)
    if match is None:
        return []
    installs = re.findall(r"\$\(BIN\)/python -m pip install .*'\.\[([^\]]*)\]'", match.group(1))
    return [e.strip() for group in installs for e in group.split(",")]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_test_extra_holds_every_other_extra_but_toxicity():
    assert missing_from_test_extra(pyproject()) == []


def test_the_check_finds_a_requirement_the_test_extra_lacks():
    project = pyproject()
    project["project"]["optional-dependencies"] = {**project["project"]["optional-dependencies"],
                                                   "newthing": ["some-new-lib>=1.2"], "s3": ["s3fs>=2099"]}
    assert missing_from_test_extra(project) == ["s3: s3fs>=2099", "newthing: some-new-lib>=1.2"]


def test_make_installs_toxicity_beside_the_test_extra_in_the_same_venv():
    makefile = (ROOT / "Makefile").read_text()
    assert {TEST_EXTRA, SEPARATE_EXTRA} <= set(setup_target_installs(makefile, SETUP_TARGET))
    assert setup_target_installs("setup-toxicity: setup\n\t$(BIN)/python -m pip install -e '.[toxicity]'\n",
                                 SETUP_TARGET) == [SEPARATE_EXTRA]  # the parser reads what a recipe installs
    # `make test` (CI) goes through that target, so the suite runs in the environment it built
    assert re.search(rf"^test:.*\b{re.escape(SETUP_TARGET)}\b", makefile, re.MULTILINE)


@pytest.mark.parametrize("extra", sorted(extras(pyproject())))
def test_each_extra_is_installed_here_at_an_accepted_version(extra):
    for req in extras(pyproject())[extra]:
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"extra {extra!r}: {req.name} is not installed (pip install -e '.[{TEST_EXTRA},{SEPARATE_EXTRA}]')")
        assert req.specifier.contains(version, prereleases=True), f"extra {extra!r}: {req.name} {version} not {req.specifier}"


def test_pip_check_finds_no_broken_requirement():
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is not installed in this environment")
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
