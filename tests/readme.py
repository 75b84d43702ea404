"""The commands the Markdown files tell a learner to run: every line of their ```bash blocks, as a shell
reads it (a line continued with `\\` and a here-document are one command; comments dropped)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^( *)```bash\n(.*?)^ *```", re.S | re.M)


@dataclass(frozen=True)
class Command:
    file: str  # relative to the repository root
    line: int
    text: str
    section: str  # the heading of the `## ` section it is in


def markdown_files() -> list[str]:
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True,
                             check=True)
    return tracked.stdout.split()


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` outside quotes, at the start or after a blank)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands(file: str) -> list[Command]:
    text = (ROOT / file).read_text()
    found = []
    for block in BLOCK.finditer(text):
        first = text[:block.start(2)].count("\n") + 1
        lines = [line[len(block.group(1)):] for line in block.group(2).splitlines()]
        i = 0
        while i < len(lines):
            start, command = i, strip_comment(lines[i].strip())
            while command.endswith("\\") and i + 1 < len(lines):  # a continued line
                i += 1
                command = command[:-1].rstrip() + " " + strip_comment(lines[i].strip())
            heredoc = re.search(r"<<'?(\w+)'?", command)
            if heredoc:  # the document's lines, verbatim, up to its end word
                body = []
                while i + 1 < len(lines) and lines[i + 1].strip() != heredoc.group(1):
                    i += 1
                    body.append(lines[i])
                i += 1
                command = "\n".join([command, *body, heredoc.group(1)])
            if command:
                headings = re.findall(r"^## (.*)$", text[:block.start()], re.M)
                found.append(Command(file, first + start, command, headings[-1] if headings else ""))
            i += 1
    return found


def every_command() -> list[Command]:
    return [command for file in markdown_files() for command in commands(file)]


def command(file: str, text: str) -> str:
    """`text`, checked to be a command of `file` as written there (a test runs what the README says)."""
    written = [c.text for c in commands(file)]
    assert text in written, f"{file} no longer says `{text}`: run what it says now"
    return text
