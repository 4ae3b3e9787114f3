"""README.md cannot drift from the code and the results: its config-group table lists exactly
the options of `cfg/`, and every figure it quotes is in a committed result file."""

from __future__ import annotations

import re
from decimal import Decimal

from engine.cli import config_groups
from tests.conftest import REPO

README = REPO / "README.md"
RESULT_SOURCES = ("benchmarks/results/*.md", "benchmarks/results/*.json", "experiments/*/RESULTS.md", "analysis/results/*.md")
RESULT_FILES = sorted(path for pattern in RESULT_SOURCES for path in REPO.glob(pattern))
NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
UNIT = r"%|x(?![\w])|ms\b|MB\b|GB\b|px\b|G\b|M\b|K\b|s\b|min\b"
TIME_UNITS = ("s", "min")  # whole seconds and minutes must be written in a result file as they are
# A figure: a number with a unit (`74.2x`, `265 ms`; `9.5-18x` gives both ends of the range), or
# with a thousands separator (`1,039`), or alone in a table cell (`| 363,982 |`, `| 10.32 / 14.63 |`).
FIGURE = re.compile(rf"(?<![\w.,/-])({NUMBER})(?:\s?[-–]\s?({NUMBER}))?(?:\s?({UNIT})|(?<=,\d{{3}}))(?![\d.])")
NUMERIC_CELL = re.compile(rf"^\**\s*(?:(?:{NUMBER})\s?(?:{UNIT})?\s*/?\s*)+\**$")


def prose(text: str) -> str:
    """`text` without code blocks, inline code and link targets (commands and paths, not figures)."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def figures(text: str) -> list[tuple[str, str]]:
    """`(number as written, unit)` of every figure `text` quotes, e.g. `("74.2", "x")`."""
    found = []
    for line in prose(text).splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")] if line.startswith("|") else [line]
        for cell in cells:
            if line.startswith("|") and NUMERIC_CELL.match(cell):
                found += [(number, unit) for number, unit in re.findall(rf"({NUMBER})\s?({UNIT})?", cell)]
                continue
            for match in FIGURE.finditer(cell):
                found += [(number, match.group(3) or "") for number in match.groups()[:2] if number]
    return found


def is_measured(figure: tuple[str, str], results: str, measured: set[Decimal]) -> bool:
    """Whether the committed results hold `figure`: written the same way, or (except whole
    seconds and minutes) a more precise number that rounds to it."""
    number, unit = figure
    if re.search(rf"(?<![\d.,]){re.escape(number)}\s?{re.escape(unit)}(?![\d.,]\d)", results):
        return True
    value = Decimal(number.replace(",", ""))
    if unit in TIME_UNITS and value == value.to_integral_value():
        return False
    places = Decimal(1).scaleb(value.as_tuple().exponent)
    return any(candidate != value and candidate.quantize(places) == value for candidate in measured)


def test_every_figure_of_the_readme_is_in_a_committed_result_file():
    results = "\n".join(path.read_text() for path in RESULT_FILES)
    measured = {Decimal(number.replace(",", "")) for number in re.findall(NUMBER, results)}
    unsourced = sorted({" ".join(figure) for figure in figures(README.read_text()) if not is_measured(figure, results, measured)})
    assert not unsourced, f"README.md quotes figures that no committed result file holds ({', '.join(RESULT_SOURCES)}): {unsourced}"


def test_figures_are_found_in_prose_tables_and_ranges():
    text = "74.2x faster, 9.5-18x, 265 ms, 1,039 tests, 8x8 digits, `train.epochs=164`, 2x16x32x32\n| ENet | 363,982 | 10.32 / 14.63 | 3.92G |"
    assert figures(text) == [("74.2", "x"), ("9.5", "x"), ("18", "x"), ("265", "ms"), ("1,039", ""), ("363,982", ""), ("10.32", ""), ("14.63", ""), ("3.92", "G")]
    assert is_measured(("74.2", "x"), "", {Decimal("74.22")}) and is_measured(("20", "x"), "", {Decimal("19.6")})
    assert not is_measured(("20", "x"), "", {Decimal("19.17")}) and not is_measured(("25", "s"), "in 25.4 s", {Decimal("25.4")})
    assert is_measured(("106", "s"), "ran in 106 s", set())


def readme_group_rows() -> dict[str, list[str]]:
    """`{group: options}` of the README's config-group table: the backquoted names in the
    second column of each row whose first column is one backquoted group name."""
    rows = {}
    for line in README.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        group = re.fullmatch(r"`([\w/]+)`", cells[0]) if line.startswith("|") and len(cells) >= 2 else None
        if group:
            rows[group.group(1)] = re.findall(r"`([^`]+)`", cells[1])
    return rows


def test_the_readme_lists_every_option_of_every_config_group():
    rows = readme_group_rows()
    for group, options in config_groups().items():
        assert group in rows, f"README.md has no row for the config group `{group}`"
        assert sorted(rows[group]) == options, (
            f"README.md's `{group}` row must list exactly the options of cfg/{group}/; write: "
            + ", ".join(f"`{option}`" for option in options)
        )
