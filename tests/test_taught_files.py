"""What a learner copies out of this repository holds only public Ray and runs on any OS Ray runs on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shipped_files() -> list[Path]:
    """The Ray scripts and the helpers they import (workshop/), as a learner copies them."""
    return sorted([*ROOT.glob("*/ray_version/*.py"), *(ROOT / "workshop").glob("*.py")])


def test_no_private_ray_module_and_no_hard_exit():
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in shipped_files()
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"_private|os\._exit", line)]
    assert not found, "use public Ray APIs, and let errors end the program normally:\n" + "\n".join(found)


def test_no_posix_only_module():
    """fcntl, termios, pwd, grp and resource do not exist on Windows, where the install-without-make path runs."""
    found = [f"{path.relative_to(ROOT)}: {match.group(0)}" for path in shipped_files()
             for match in re.finditer(r"^\s*(?:import|from)\s+(fcntl|termios|pwd|grp|resource)\b",
                                      path.read_text(), re.M)]
    assert not found, "\n".join(found)
