"""What a learner copies out of this repository holds only public Ray and runs on any OS Ray runs on."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

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


# ------------------------------------------------------------------------------------ numbered lessons
# A Ray script marks the handful of changes its README teaches with `# [n]` comments, as Ray Train's
# getting-started does; not every line that touches Ray carries one. The numbers first appear in order down the
# file (a lesson may be marked again further down, where it continues), and the README explains each once.
def ray_files() -> list[Path]:
    return sorted(ROOT.glob("*/ray_version/*.py"))


def _comments(text: str) -> dict[int, str]:
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return {token.start[0]: token.string for token in tokens if token.type == tokenize.COMMENT}


def number_order_problems(text: str) -> list[str]:
    first_seen: dict[int, int] = {}
    for line, comment in sorted(_comments(text).items()):
        for n in re.findall(r"\[(\d+)\]", comment):
            first_seen.setdefault(int(n), line)
    numbers = list(first_seen)
    problems = [f"[{b}] first at line {first_seen[b]}, before [{a}] (line {first_seen[a]})"
                for a, b in zip(numbers, numbers[1:]) if b < a]
    if sorted(numbers) != list(range(1, len(numbers) + 1)):
        problems.append(f"numbers {sorted(numbers)}: they should be 1..{len(numbers)}")
    return problems


@pytest.mark.parametrize("path", ray_files(), ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_the_numbered_lessons_first_appear_in_order(path):
    problems = number_order_problems(path.read_text())
    assert not problems, "\n".join(problems)


def test_the_numbering_rule_catches_what_it_should():
    assert number_order_problems("x = 1  # [1] a\ny = 2  # [2] b\nz = 3  # [1] a again\n") == []
    assert number_order_problems("x = 1  # [2] b\ny = 2  # [1] a\n") == ["[1] first at line 2, before [2] (line 1)"]
    assert number_order_problems("x = 1  # [1] a\ny = 2  # [3] c\n") == ["numbers [1, 3]: they should be 1..2"]


@pytest.mark.parametrize("module", sorted({p.parent.parent.name for p in ray_files()}))
def test_the_workshop_section_explains_every_number_of_its_pair(module):
    """The pair that a module README's "In the workshop" section diffs: one list item per number in its Ray file."""
    readme = (ROOT / module / "README.md").read_text()
    section = readme.split("\n## In the workshop\n", 1)[1].split("\n## ", 1)[0]
    name = re.search(rf"diff -u {module}/baseline/(\w+)\.py", section).group(1)
    text = (ROOT / module / "ray_version" / f"{name}.py").read_text()
    numbers = sorted({int(n) for comment in _comments(text).values() for n in re.findall(r"\[(\d+)\]", comment)})
    explained = sorted(int(n) for n in re.findall(r"^(\d+)\. ", section, re.M))
    assert explained == numbers, f"{module}/README.md In the workshop explains {explained}, {name}.py has {numbers}"


# ------------------------------------------------------------------------------------ a script lifts out
# Every pair's smoke run (tests/test_pairs.py) runs both sides lifted out of the repository with a Python that
# does not have it, the Ray side against the test cluster. Here a Ray script lifted out also starts its own local
# Ray, so that its workers, actors and replicas run that Python too and can only use the copied workshop/.
LIFTED_WITH_LOCAL_RAY = ["ray_core/ray_version/bootstrap_auc.py", "ray_data/ray_version/preprocess_reviews.py",
                         "ray_serve/ray_version/text_classifier_server.py"]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", LIFTED_WITH_LOCAL_RAY)
def test_a_ray_script_lifted_out_runs_on_a_local_ray(script, project_python, tmp_path):
    import subprocess

    from helpers import base_env, copied_helpers_imported, lift_out
    from workshop import models

    copy = lift_out(Path(script), tmp_path / "project")
    env = base_env()
    env["WORKSHOP_MODEL_CACHE"] = str(models.CACHE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([project_python, str(copy), "--smoke-test", "--output", str(tmp_path / "out")],
                          cwd=tmp_path / "project", env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert (tmp_path / "out" / "result.json").is_file() and "Traceback" not in proc.stderr
    assert copied_helpers_imported(copy)


@pytest.mark.timeout(120)
def test_a_script_copied_into_a_folder_of_another_shape_writes_where_its_output_says(project_python, tmp_path):
    """A learner copies one script and workshop/ into their own project, under another name: the default output
    is named after the script, in the folder it runs from, and --output goes where it says."""
    import shutil
    import subprocess

    from helpers import base_env, read_result

    project = tmp_path / "myproject"
    project.mkdir()
    shutil.copy2(ROOT / "ray_core" / "baseline" / "bootstrap_auc.py", project / "auc.py")
    shutil.copytree(ROOT / "workshop", project / "workshop", ignore=shutil.ignore_patterns("__pycache__"))
    for args, where in (([], project / "outputs" / "auc"), (["--output", "results/run1"], project / "results" / "run1")):
        proc = subprocess.run([project_python, "auc.py", "--smoke-test", *args], cwd=project, env=base_env(),
                              capture_output=True, text=True, timeout=100)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert read_result(where)["answer"]["auc"] > 0.5
    assert sorted(p.name for p in project.iterdir()) == ["auc.py", "outputs", "results", "workshop"]
