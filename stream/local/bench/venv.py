"""The bench virtualenv: the Quix Streams peer's interpreter, apart from the project's.

quixstreams pins pydantic below the project's version, so the peer runs in a virtualenv of
its own (default `build/bench-venv`), created on first use by `anonstream bench` or by
`make bench-venv` (`python -m stream.local.bench.venv [DIR]`), with pinned packages.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from stream.local.bench.exceptions import BenchError

PEER_REQUIREMENTS = ("quixstreams==3.28.1", "maxminddb==3.2.0", "orjson==3.13.0")
"""What the peer imports besides the standard library, pinned."""
STAMP = ".bench-installed"
"""Written into the virtualenv once every requirement is installed."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def default_peer_python() -> Path:
    """build/bench-venv/bin/python of this checkout, else of the working directory (where
    it exists), else of this checkout (where it is created)."""
    for base in (repo_root(), Path.cwd()):
        candidate = base / "build" / "bench-venv" / "bin" / "python"
        if (candidate.parent.parent / STAMP).exists():
            return candidate
    return repo_root() / "build" / "bench-venv" / "bin" / "python"


def ensure_peer_python(
    python: Path, *, create: bool, progress: Callable[[str], None], base: str | None = None
) -> Path:
    """`python`; with `create`, first make `<venv>` of `<venv>/bin/python` a virtualenv with
    PEER_REQUIREMENTS unless an earlier call completed it. Without `create` (an interpreter
    the user named), nothing is installed: BenchError if it does not exist. The virtualenv is
    made by `base` (default: python3.11 on PATH, else this interpreter)."""
    venv = python.parent.parent
    if not create:
        if not python.exists():
            raise BenchError(f"--peer-python {python} does not exist")
        return python
    if python.exists() and (venv / STAMP).exists():
        return python
    base = base or shutil.which("python3.11") or sys.executable
    progress(f"creating the bench virtualenv {venv} ({' '.join(PEER_REQUIREMENTS)}) ...")
    for command in (
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS],
    ):
        result = subprocess.run(  # noqa: S603 - fixed argv
            command, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise BenchError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    (venv / STAMP).touch()
    progress(f"bench virtualenv ready: {python}")
    return python


def main(argv: list[str] | None = None) -> int:
    """`python -m stream.local.bench.venv [DIR [BASE_PYTHON]]` (the Makefile's bench-venv)."""
    args = sys.argv[1:] if argv is None else argv
    venv = Path(args[0]) if args else repo_root() / "build" / "bench-venv"
    ensure_peer_python(
        venv / "bin" / "python",
        create=True,
        progress=lambda line: print(line, file=sys.stderr),
        base=args[1] if len(args) > 1 else None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
