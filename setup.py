"""Optional compiled build: `ANONSTREAM_COMPILE=1 pip install .` compiles the chain's hot
modules with mypyc (a C compiler is needed); without the variable they run as the same Python
source, which is what `pip install -e '.[dev]'`, the tests and development use. The
configuration itself is in pyproject.toml.

Measured on the development machines (bench_chain.py, best of 20 runs of fresh events):
compiled ~1.6x the pure-Python throughput. The compiled modules are the same source files,
type-checked by mypy --strict; `make test-compiled` runs the whole suite against them.

Not for editable installs: the extension modules would land next to the sources and be
imported instead of them, so later edits of those files would silently not run.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup

COMPILED_MODULES = [
    "anonymizers/allowlist.py",
    "anonymizers/chain.py",
    "anonymizers/consent.py",
    "anonymizers/context.py",
    "anonymizers/event_time.py",
    "anonymizers/geo/index.py",
    "anonymizers/geo/records.py",
    "anonymizers/ip.py",
    "anonymizers/memo.py",
    "anonymizers/outcome.py",
    "anonymizers/pseudonym.py",
    "anonymizers/search_terms.py",
    "anonymizers/urls.py",
]


MYPYC_REQUIREMENT = "mypy==2.4.1"  # the dev dependency's version: one type checker, one compiler
# mypyc type-checks what the compiled modules import: those libraries must be present in
# the build environment, at the versions pyproject.toml pins.
TYPED_IMPORTS = {"maxminddb", "numpy", "pydantic"}


def _build_requirements() -> list[str]:
    project = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())["project"]
    pinned = [
        requirement
        for requirement in project["dependencies"]
        if re.split(r"[=<>~! \[]", requirement, maxsplit=1)[0] in TYPED_IMPORTS
    ]
    return [MYPYC_REQUIREMENT, *pinned]


def _compiled_build() -> dict[str, Any]:
    if os.environ.get("ANONSTREAM_COMPILE", "") != "1":
        return {}
    if "editable_wheel" in sys.argv:
        raise SystemExit(
            "ANONSTREAM_COMPILE=1 is for non-editable installs (pip install .); "
            "an editable install would import stale compiled modules after edits"
        )
    try:
        from mypyc.build import mypycify
    except ImportError:
        # First pass of a PEP 517 build: setuptools hands setup_requires to pip as build
        # requirements, then runs this file again with mypyc importable.
        return {"setup_requires": _build_requirements()}
    return {
        "setup_requires": _build_requirements(),
        "ext_modules": mypycify(COMPILED_MODULES, opt_level="3"),
    }


setup(**_compiled_build())
