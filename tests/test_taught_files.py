"""What a learner copies out of this repository holds only public Ray and runs on any OS Ray runs on."""

from __future__ import annotations

import ast
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


# ------------------------------------------------------------------------------------ numbered Ray lines
# Every statement of a Ray script that uses Ray carries a numbered comment `# [n]` (the README explains each
# number), on one of its lines or at most NEARBY lines above (one number may span a few adjacent lines), and
# the numbers go up down the file. "Uses Ray": a name imported from ray, or a call of .remote/.bind/.options/
# .materialize. A compound statement (if, with, def, class) counts by its header only.
RAY_METHODS = {"remote", "bind", "options", "materialize"}
NEARBY = 5  # lines: how far a number reaches down, and how far apart two comments with one number may be


def ray_files() -> list[Path]:
    return sorted(ROOT.glob("*/ray_version/*.py"))


def _comments(text: str) -> dict[int, str]:
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return {token.start[0]: token.string for token in tokens if token.type == tokenize.COMMENT}


def _ray_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "ray"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
            names |= {a.asname or a.name for a in node.names}
    return names


def _header(stmt: ast.stmt) -> tuple[int, int, list[ast.AST]]:
    """First and last line of a statement as the numbering rule reads it, and the parts that may use Ray."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        start = min([stmt.lineno] + [d.lineno for d in stmt.decorator_list])
        parts = [*stmt.decorator_list, *getattr(stmt, "bases", []), *getattr(stmt, "keywords", [])]
        return start, stmt.body[0].lineno - 1, parts
    if isinstance(stmt, (ast.If, ast.While)):
        return stmt.lineno, stmt.body[0].lineno - 1, [stmt.test]
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return stmt.lineno, stmt.body[0].lineno - 1, [stmt.target, stmt.iter]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return stmt.lineno, stmt.body[0].lineno - 1, list(stmt.items)
    if isinstance(stmt, ast.Try):
        return stmt.lineno, stmt.lineno, []  # its except clauses count on their own
    return stmt.lineno, stmt.end_lineno, [stmt]


def unnumbered_ray_statements(text: str) -> list[str]:
    tree, comments, lines = ast.parse(text), _comments(text), text.splitlines()
    names = _ray_names(tree)

    def uses_ray(node: ast.AST) -> bool:
        return any(isinstance(sub, ast.Name) and sub.id in names or
                   isinstance(sub, ast.Attribute) and sub.attr in RAY_METHODS for sub in ast.walk(node))

    numbered = {line for line, comment in comments.items() if re.search(r"\[\d+\]", comment)}
    found = []
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.ExceptHandler):  # `except ray.exceptions...:` counts on its own line
            start, end, parts = stmt.lineno, stmt.lineno, [stmt.type] if stmt.type else []
        elif not isinstance(stmt, ast.stmt) or isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        else:
            start, end, parts = _header(stmt)
        if any(uses_ray(part) for part in parts) and not numbered & set(range(start - NEARBY, end + 1)):
            found.append(f"{start}: {lines[start - 1].strip()[:90]}")
    return sorted(found, key=lambda entry: int(entry.split(":")[0]))


def number_order_problems(text: str) -> list[str]:
    seen = [(line, int(n)) for line, comment in sorted(_comments(text).items())
            for n in re.findall(r"\[(\d+)\]", comment)]
    problems = []
    for (line_a, a), (line_b, b) in zip(seen, seen[1:]):
        if b < a or (b == a and line_b - line_a > NEARBY):
            problems.append(f"[{b}] at line {line_b} after [{a}] at line {line_a}")
    numbers = sorted({n for _, n in seen})
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"numbers {numbers}: they should be 1..{len(numbers)}")
    return problems


@pytest.mark.parametrize("path", ray_files(), ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_every_ray_statement_is_numbered_in_order(path):
    text = path.read_text()
    assert not unnumbered_ray_statements(text), "Ray statements without a [n] comment:\n" + \
        "\n".join(unnumbered_ray_statements(text))
    assert not number_order_problems(text), "\n".join(number_order_problems(text))


def test_the_numbering_rule_catches_what_it_should():
    text = ("import ray\n\n\n@ray.remote  # [1] a task\ndef f():\n    return 1\n\n\n"
            "def main():\n    ray.init()  # [2] start\n    ref = f.remote()\n    x = 1\n    y = 2\n"
            "    z = 3\n    w = 4\n    print(ray.get(ref))\n    if True:  # [3] trace\n        ray.timeline()\n"
            "    x = 1  # [2] back\n")
    assert unnumbered_ray_statements(text) == ["16: print(ray.get(ref))"]
    assert number_order_problems(text) == ["[2] at line 19 after [3] at line 17"]


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


# ------------------------------------------------------------------------------------ the diff is the lesson
# Changed lines of `diff -u baseline ray_version` (lines starting with + or -, headers aside) per line of the
# Ray file: how much a learner reads that is not the baseline's. The goal is at most 0.5, 0.7 for the batch
# LLM job; the pairs below that do not reach it hold the ratio they have now, and why, until they do.
RATIO_GOAL = {"batch_generate": 0.7}  # a different library: Hugging Face generate() on one side, vLLM on the other
RATIO_NOT_YET = {  # pairs above their goal: the ratio they hold now, and why
    "tune_mlp": (0.6, "a checkpoint every epoch, a trial resumed from it after a crash, --restore after Ctrl-C "
                       "(22 lines) and a driver callback have no counterpart in a sequential Optuna study"),
    "batch_generate": (0.79, "the baseline's 37-line generate() loop gives way to a vLLM processor, not to Ray lines"),
}
# The Ray LLM server is the whole OpenAI server in configuration: vllm_examples/README.md counts the baseline
# lines it replaces (tools.docs.openai_server_lines) instead.
RATIO_FILES = [path for path in ray_files() if path.stem != "openai_server"]


def diff_ratio(baseline: Path, ray_version: Path) -> float:
    import difflib

    ray_lines = ray_version.read_text().splitlines()
    diff = difflib.unified_diff(baseline.read_text().splitlines(), ray_lines, lineterm="")
    changed = sum(1 for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---"))
    return changed / len(ray_lines)


@pytest.mark.parametrize("ray_file", RATIO_FILES, ids=lambda p: p.stem)
def test_the_diff_is_mostly_the_lesson(ray_file):
    ratio = diff_ratio(ray_file.parent.parent / "baseline" / ray_file.name, ray_file)
    limit = RATIO_NOT_YET.get(ray_file.stem, (RATIO_GOAL.get(ray_file.stem, 0.5), ""))[0]
    assert ratio <= limit, (f"{ray_file.stem}: {ratio:.2f} of the Ray file's lines differ from the baseline's "
                            f"(at most {limit}); move what is not Ray into code both sides share")


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

    from conftest import base_env, copied_helpers_imported, lift_out
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
