"""Writing one marked section of ``benchmarks/README.md`` (the estimation benchmarks' ``--readme``)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_section(name: str, body: str, after: str | None = None, readme: Path = README) -> None:
    """Put ``body`` (which starts with ``<!-- section:name -->`` and ends with ``<!-- /section:name -->``) in place of
    that section of ``readme``; a section not there yet goes right after the section ``after``.

    Raises:
        ValueError: The section is not there and ``after`` is not given (or not there either).
    """
    text = readme.read_text()
    pattern = rf"<!-- section:{re.escape(name)} -->.*?<!-- /section:{re.escape(name)} -->"
    if re.search(pattern, text, flags=re.S):
        text = re.sub(pattern, lambda _: body, text, flags=re.S)
    elif after is not None and f"<!-- /section:{after} -->" in text:
        text = text.replace(f"<!-- /section:{after} -->", f"<!-- /section:{after} -->\n\n{body}", 1)
    else:
        raise ValueError(f"{readme} has no section {name!r}" + (f" nor {after!r}" if after else ""))
    readme.write_text(text)
