"""The README and docs/ stay true: the Quick start is what CI runs, the README stays short and
free of commit hashes, every relative link and anchor resolves, and every `kptoolkit ...`
command shown in a bash block is accepted by the real argument parser."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 260  # a newcomer reads it in ten minutes; the rest lives in docs/

FENCE = re.compile(r"^(```|~~~)")
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# a git object name as humans paste it: 7 to 40 hex characters standing alone
HEX_TOKEN = re.compile(r"(?<![\w.\-])[0-9a-fA-F]{7,40}(?![\w\-]|\.\w)")
BACKTICK_SPAN = re.compile(r"`[^`\n]+`")
PAREN_SPAN = re.compile(r"\([^()]*\)")
SEPARATORS = {"&&", "||", ";", "|", "&"}


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name


# ---------------------------------------------------------------- markdown parsing helpers


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced blocks opened with ```language."""
    blocks, body, inside = [], [], None
    for line in text.splitlines():
        stripped = line.strip()
        if inside is None and stripped.startswith("```"):
            inside = stripped[3:].strip()
            body = []
        elif inside is not None and stripped.startswith("```"):
            if inside == language:
                blocks.append("\n".join(body))
            inside = None
        elif inside is not None:
            body.append(line)
    return blocks


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: inline markup dropped, lower case, punctuation other
    than '-' and '_' removed, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, duplicates numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The link and image targets of a Markdown file, outside code."""
    prose = "\n".join(prose_lines(path.read_text()))
    prose = BACKTICK_SPAN.sub("code", prose)  # [`x`](y) stays a link, `[x](y)` is not one
    return LINK.findall(prose)


def broken_links(path: Path) -> list[str]:
    """Each relative link of `path` whose file, or whose #anchor in that file, is missing."""
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.\-]*:", target, re.IGNORECASE):
            continue  # https:, mailto:, ...: not checked offline
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{rel(path)}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{rel(path)}: {target} (no heading '#{anchor}')")
    return problems


def hash_like_tokens(text: str) -> list[str]:
    """Tokens that look like commit hashes, inside backticks or parentheses (a hex string of
    7-40 characters with a digit in it, not part of a file or package name)."""
    spans = BACKTICK_SPAN.findall(text) + PAREN_SPAN.findall(text)
    return [
        token
        for span in spans
        for token in HEX_TOKEN.findall(span.strip("`()"))
        if re.search(r"\d", token)
    ]


# ---------------------------------------------------------------- commands in bash blocks


def shell_commands(block: str) -> list[list[str]]:
    """The simple commands of a bash block as argv lists: continuation lines joined, comments
    dropped, split at &&, ||, ;, |. Lines with shell variables or <placeholders> are skipped."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        if "$" in line or re.search(r"<[^>\s]+>", line):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        command: list[str] = []
        for token in lexer:
            if token in SEPARATORS:
                commands.append(command)
                command = []
            else:
                command.append(token)
        commands.append(command)
    return [command for command in commands if command]


def kptoolkit_argv(command: list[str]) -> list[str] | None:
    """The arguments given to kptoolkit by `command` (`kptoolkit ...`, `python -m kptoolkit
    ...`, `torchrun ... -m kptoolkit ...`, after any VAR=value prefix), else None."""
    while command and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", command[0]):
        command = command[1:]
    if command and command[0] == "kptoolkit":
        return command[1:]
    for index in range(len(command) - 1):
        if command[index] == "-m" and command[index + 1] == "kptoolkit":
            return command[index + 2 :]
    return None


def documented_kptoolkit_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in markdown_files():
        for block in code_blocks(path.read_text(), "bash"):
            for command in shell_commands(block):
                argv = kptoolkit_argv(command)
                if argv:
                    found.append((rel(path), argv))
    return found


def strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` and its subparsers with prefix matching off: a removed `--flag` must not pass
    as the abbreviation of a longer one."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                strict(sub)
    return parser


@pytest.fixture(scope="module")
def cli_parser() -> argparse.ArgumentParser:
    from kptoolkit.cli.main import build_parser

    return strict(build_parser())


def parse_error(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """None when `parser` accepts `argv`, else why not."""
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        return f"rejected (exit {exc.code})"
    return None


# ---------------------------------------------------------------- Quick start and CI


def quick_start_commands() -> list[str]:
    readme = README.read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_two_commands():
    assert len(quick_start_commands()) == 2


def test_ci_installs_and_tests_as_the_readme_says():
    *installs, test = quick_start_commands()[1].split(" && ")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert installs
    for install in installs:
        assert install in ci
    assert test in ci


# ---------------------------------------------------------------- README size and content


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_readme_sections_in_order():
    headings = [line for line in prose_lines(README.read_text()) if line.startswith("## ")]
    expected = [
        "## Install",
        "## Quick start",
        "## Loading official checkpoints",
        "## Results",
        "## Components",
        "## Writing a plugin",
        "## Your own data",
        "## GPUs and clusters",
        "## Development",
    ]
    assert headings == expected


def test_hash_detector():
    assert hash_like_tokens("fixed in (commit 811a2a4, float32)") == ["811a2a4"]
    assert hash_like_tokens("see `3f6a947e0d1c2b3a`") == ["3f6a947e0d1c2b3a"]
    assert hash_like_tokens("[fix](https://example.org/commit/811a2a4).") == ["811a2a4"]
    assert hash_like_tokens("`vgg19-dcbb9e9d.pth` (1,600 frames) `deadbeef`") == []
    assert hash_like_tokens("a bare 811a2a4 outside any span") == []


def test_readme_has_no_commit_hashes():
    assert hash_like_tokens(README.read_text()) == []


# ---------------------------------------------------------------- links and anchors


def test_github_slug():
    assert github_slug("Metrics, evaluators and `kptoolkit bench`") == (
        "metrics-evaluators-and-kptoolkit-bench"
    )
    assert github_slug("Precision, layout and speed") == "precision-layout-and-speed"
    assert github_slug("The current default: puppets version 2 (work in progress)") == (
        "the-current-default-puppets-version-2-work-in-progress"
    )
    assert github_slug("**all_k** + two-stage") == "all_k--two-stage"


def test_anchors_number_duplicates_and_skip_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n## Results\n```bash\n# not a heading\n```\n## Results\n")
    assert anchors(page) == {"title", "results", "results-1"}


def test_broken_links_are_found(tmp_path):
    (tmp_path / "other.md").write_text("## A heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading) [file](missing.md) [anchor](other.md#nowhere) "
        "[web](https://example.org/x) `[code](missing.md)` [`code`](gone.md)\n"
    )
    problems = broken_links(page)
    assert len(problems) == 3
    assert "missing.md (no such file)" in problems[0]
    assert "#nowhere" in problems[1]
    assert "gone.md (no such file)" in problems[2]


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
def test_relative_links_and_anchors_resolve(path):
    assert links(path) or path != README, "README.md has no links: the parser broke"
    assert broken_links(path) == []


# ---------------------------------------------------------------- documented commands


def test_shell_commands_parsing():
    block = (
        "HF_HUB_OFFLINE=1 python -m kptoolkit list --kind maskers  # a comment\n"
        "kptoolkit train --generator fomm \\\n    --out runs/x && kptoolkit info frame\n"
        "kptoolkit bench --out $OUT\n"
        "kptoolkit data check <folder>\n"
    )
    argvs = [kptoolkit_argv(command) for command in shell_commands(block)]
    assert argvs == [
        ["list", "--kind", "maskers"],
        ["train", "--generator", "fomm", "--out", "runs/x"],
        ["info", "frame"],
    ]


def test_parser_rejects_unknown_and_abbreviated_flags(cli_parser):
    assert parse_error(cli_parser, ["bench", "--profile", "micro"]) is None
    assert parse_error(cli_parser, ["bench", "--no-such-flag"]) is not None
    assert parse_error(cli_parser, ["bench", "--prof", "micro"]) is not None  # no prefixes
    assert parse_error(cli_parser, ["data", "check", "d", "--strict"]) is None
    assert parse_error(cli_parser, ["data", "check", "d", "--stric"]) is not None


def test_readme_shows_commands():
    readme = {argv[0] for path, argv in documented_kptoolkit_commands() if path == "README.md"}
    assert {"bench", "train", "list", "info", "data"} <= readme


@pytest.mark.parametrize(
    ("path", "argv"),
    documented_kptoolkit_commands(),
    ids=[f"{path}: kptoolkit {' '.join(argv)}" for path, argv in documented_kptoolkit_commands()],
)
def test_documented_command_is_accepted(cli_parser, path, argv, capsys):
    error = parse_error(cli_parser, argv)
    assert error is None, (
        f"{path}: `kptoolkit {shlex.join(argv)}` {error}: {capsys.readouterr().err}"
    )
