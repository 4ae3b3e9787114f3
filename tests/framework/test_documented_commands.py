"""Every command shown in README.md, the Makefile and experiments/ composes and validates
(each job of a sweep included), so a renamed option breaks a test, not a user; `--help` lists the
groups and options; the model summary shows FLOPs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from engine.cli import check_command_line, config_groups, help_text
from tests.conftest import COMMAND_TIMEOUT, REPO
from tests.documented import documented_commands as documented_commands_in, sweep_jobs

SCRIPT = re.compile(r"(?:python\s+)?(run_experiment\.py|run_profiler\.py)([^`#|\n]*)")
MAKE = re.compile(r"make experiment ARGS=\"([^\"]*)\"")
PLACEHOLDER = re.compile(r"<|\.\.\.|^key=value$|^\[")


def documented_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for name in ("README.md", "Makefile"):
        text = (REPO / name).read_text()
        found = [(script, arguments) for script, arguments in SCRIPT.findall(text)] + [("run_experiment.py", arguments) for arguments in MAKE.findall(text)]
        for script, arguments in found:
            words = shlex.split(arguments)
            if words and not any(PLACEHOLDER.search(word) for word in words) and all("=" in word or word.startswith("-") for word in words):
                commands.append((f"{name}: {script} {arguments.strip()}", words))
    return commands


COMMANDS = documented_commands()


def test_the_documents_show_commands():
    assert len(COMMANDS) >= 6, COMMANDS
    assert any("net=resnet20 dataset=cifar10" in label for label, _ in COMMANDS if label.startswith("Makefile"))


@pytest.mark.parametrize("words", [words for _, words in COMMANDS], ids=[label for label, _ in COMMANDS])
def test_documented_command_composes_and_validates(words):
    if words[0] in ("--help", "-h"):
        return
    multirun = any(word in ("-m", "--multirun") for word in words)
    check_command_line([word for word in words if word not in ("-m", "--multirun")], multirun=multirun)


EXPERIMENT_COMMANDS = documented_commands_in(*sorted(str(path.relative_to(REPO)) for path in (REPO / "experiments").glob("**/*.md")))


def experiment_command_cases() -> list:
    """One case per command of experiments/; a sweep of more than 4 jobs composes each of them
    (about 0.5 s apiece), so it is marked slow."""
    return [
        pytest.param(words, id=label, marks=[pytest.mark.slow] if sweep_jobs(words) > 4 else [])
        for label, words in EXPERIMENT_COMMANDS
    ]


def test_every_family_documents_commands():
    labels = " ".join(label for label, _ in EXPERIMENT_COMMANDS)
    for family in ("box", "dcls", "checkered", "flexconv", "octave", "crossres"):
        assert f"experiments/{family}/" in labels, family


@pytest.mark.parametrize("words", experiment_command_cases())
def test_every_command_in_experiments_composes_and_validates(words):
    multirun = any(word in ("-m", "--multirun") for word in words)
    check_command_line([word for word in words if word not in ("-m", "--multirun")], multirun=multirun)


def test_help_lists_usage_groups_options_examples_and_keys(monkeypatch):
    monkeypatch.setattr(sys.modules["__main__"], "__doc__", "Train and test one configuration: `python run_experiment.py ...`.")
    text = help_text()
    assert text.startswith("Train and test one configuration")
    for group, options in config_groups().items():
        assert re.search(rf"^  {group}\s+{re.escape(', '.join(options))}$", text, flags=re.MULTILINE), group
    assert "common" not in config_groups() and "net" in config_groups()
    for key in ("train.epochs", "train.do=false", "pretrained=", "pretrained_wandb", "resume=last", "debug=true", "python run_experiment.py -m"):
        assert key in text


def test_help_command_prints_the_help_not_the_config():
    result = subprocess.run([sys.executable, "run_experiment.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert result.returncode == 0 and result.stdout.startswith("Train and test one configuration")
    assert "_target_" not in result.stdout and "== Config ==" not in result.stdout
