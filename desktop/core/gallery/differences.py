"""What differs between pictures' parameters: the rows the gallery's side-by-side compare shows and highlights.

Each picture's parameters text (A1111's, as the gallery keeps it for every picture it can read) becomes rows of
(key, value): "Prompt", "Negative prompt", then each parameter in the text's order. A key differs when the
pictures do not all have it with the same value, so a key only some of them have differs too.
"""

from __future__ import annotations

from ..infotext import parse_infotext

PROMPT, NEGATIVE = "Prompt", "Negative prompt"


def parameter_rows(parameters: str) -> list[tuple[str, str]]:
    """(key, value) rows of one picture's parameters text; [] when it has none."""
    if not parameters.strip():
        return []
    info = parse_infotext(parameters)
    rows = [(PROMPT, info.prompt)] if info.prompt else []
    if info.negative_prompt:
        rows.append((NEGATIVE, info.negative_prompt))
    return rows + [(key, value) for key, value in info.params.items() if key not in (PROMPT, NEGATIVE)]


def differing_keys(tables: list[list[tuple[str, str]]]) -> set[str]:
    """The keys whose value is not the same in every table (a key missing from one counts as differing)."""
    values = [dict(table) for table in tables]
    keys = {key for table in values for key in table}
    return {key for key in keys if len({table.get(key) for table in values}) > 1}
