"""The shell commands of the README and of docs/ run as written (after ``make setup``, in
its environment, from the repository root): every script, config, module, make target
and repository file they name exists. Commands are the lines of the fenced blocks and the
inline code spans that start with a program (``python``, ``make``, ...); the files their
runs make (``output/...``, the generated datasets) and placeholders are not checked."""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess

from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
PROGRAMS = ("python", ".venv/bin/python", "make", "torchrun", "tensorboard", "git", "pip")
SHELL_BLOCKS = ("", "sh", "bash", "shell", "console")
# Tracked top-level folders: a path under one of them names a file of the repository.
TRACKED = ("configs/", "tools/", "benchmarks/", "lada/", "docs/", "tests/", "requirements/")
# What runs make (and the embedded / fetched datasets): named, not shipped.
MADE = ("output/", "datasets/synthetic/", "datasets/trees/", "datasets/coco/")


def commands(text: str) -> list[str]:
    """The commands of a markdown text: fenced shell blocks (continuation lines joined,
    comments dropped) and inline code spans, each kept when it starts with a program of
    :data:`PROGRAMS` (after ``VAR=value`` assignments)."""
    found = []
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        if language in SHELL_BLOCKS:
            joined = re.sub(r"\\\n\s*", " ", body)
            found += [line.split(" #")[0].strip() for line in joined.splitlines()]
    found += re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    return [c for c in found if _program(c) is not None]


def _program(command: str) -> str | None:
    words = command.split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    return words[0] if words and words[0] in PROGRAMS else None


def problems(command: str) -> list[str]:
    """What the command names that does not exist."""
    try:
        words = shlex.split(command)
    except ValueError as error:
        return [f"not a shell command: {error}"]
    while words and "=" in words[0] and words[0].split("=")[0].isupper():
        words = words[1:]
    program, args = words[0], words[1:]
    found = []
    if program in ("python", ".venv/bin/python") and args:
        if args[0] == "-m":
            module = args[1]
            if module != "pytest" and importlib.util.find_spec(module) is None:
                found.append(f"module {module}")
        elif args[0].endswith(".py") and not (REPO / args[0]).is_file():
            found.append(f"script {args[0]}")
    if program == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M)
        found += [f"make target {a}" for a in args if "=" not in a and a not in targets]
    for word in args:
        if any(mark in word for mark in "$*<>[") or word.startswith(MADE):
            continue
        if word.startswith(TRACKED) or re.fullmatch(r"datasets/\w+\.py", word):
            if not (REPO / word).exists():
                found.append(f"file {word}")
    return found


def all_commands() -> list[tuple[str, str]]:
    return [(str(path.relative_to(REPO)), command)
            for path in DOCS for command in commands(path.read_text())]


def test_the_docs_name_commands():
    named = all_commands()
    pages = {page for page, _ in named}
    assert "README.md" in pages and "docs/predict.md" in pages and len(named) > 40
    assert ("README.md", "make demo") in named
    assert any(c.startswith("python tools/predict.py --config-file output/quick/lada/config.yaml")
               for _, c in named)


def test_every_command_names_what_exists():
    missing = [f"{page}: {command}: {', '.join(found)}"
               for page, command in all_commands() for found in [problems(command)] if found]
    assert missing == []


def test_a_command_naming_a_missing_script_config_or_target_is_caught():
    text = """
```
python tools/no_such_tool.py --config-file configs/quick/no_such.yaml \\
  --input photos/ --output output/x
make no_such_target
OMP_NUM_THREADS=1 python -m lada.no_such_module
```
and inline `python datasets/no_such.py`, but a log line is not a command:
```
own-data recipe (RECIPE.ENABLED): 36 training images
```
"""
    found = [problems(c) for c in commands(text)]
    assert found == [["script tools/no_such_tool.py", "file tools/no_such_tool.py",
                      "file configs/quick/no_such.yaml"],
                     ["make target no_such_target"],
                     ["module lada.no_such_module"],
                     ["script datasets/no_such.py", "file datasets/no_such.py"]]


def test_the_dataset_tools_commands_parse_without_a_deprecated_flag(capsys):
    """The documented commands of the visualiser and the dataset browser parse with the
    tools' own parsers and use the current flags (--dataset NAME JSON IMAGE_ROOT
    registers, --name chooses): no deprecation warning."""
    from test_scripts import load_tool

    checked = 0
    for page, command in all_commands():
        words = shlex.split(command)
        for tool in ("visualize_assignment", "browse_dataset"):
            if words[:2] == ["python", f"tools/{tool}.py"]:
                load_tool(tool).build_parser().parse_args(words[2:])
                assert capsys.readouterr().err == "", f"{page}: {command}"
                checked += 1
    assert checked >= 6


def test_make_demo_trains_on_the_readmes_one_thread_unless_told_otherwise():
    # the README's demo figure was measured with one thread, and the thread count
    # changes the AP; an OMP_NUM_THREADS of the caller's wins (make -n: nothing runs)
    def demo_command(**env):
        environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MAKEFLAGS")}
        done = subprocess.run(["make", "-n", "demo"], cwd=REPO, env={**environment, **env},
                              capture_output=True, text=True, check=True, timeout=60)
        return next(line for line in done.stdout.splitlines() if "train_net.py" in line)

    assert demo_command().startswith("OMP_NUM_THREADS=1 ")
    assert demo_command(OMP_NUM_THREADS="2").startswith("OMP_NUM_THREADS=2 ")
