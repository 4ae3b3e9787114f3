"""The commands that the documentation shows, as override lists tests can compose and validate."""

from __future__ import annotations

import re
import shlex

from tests.conftest import REPO

COMMAND = re.compile(r"python\s+(run_experiment|run_profiler|run_crossres)\.py((?:[^`\n\\#|]|\\\n)*)")
PLACEHOLDER = re.compile(r"\S*<[^>]*>\S*|\[net=[^\]]*\]")


def documented_commands(*documents: str) -> list[tuple[str, list[str]]]:
    """`(label, overrides)` of every `python run_*.py ...` command in `documents` (paths from
    the repository root). A placeholder word `key=<...>` and an optional `[net=...]` are left
    out, so commands compose without a data folder."""
    commands = []
    for name in documents:
        for script, arguments in COMMAND.findall((REPO / name).read_text()):
            words = shlex.split(PLACEHOLDER.sub("", arguments.replace("\\\n", " ")))
            commands.append((f"{name}: {script}.py {' '.join(words)}", words))
    return commands


def sweep_jobs(words: list[str]) -> int:
    """How many runs a command starts: the product of its comma-separated sweeps."""
    count = 1
    for word in words:
        if "=" in word and "[" not in word:
            count *= len(word.split("=", 1)[1].split(","))
    return count
