"""docs/tcp.md carries the transition table verbatim; it must match tcp_fsm.TRANSITIONS."""

from __future__ import annotations

from pathlib import Path

from rumpkernel.net.inet.tcp_fsm import render_table

DOC = Path(__file__).resolve().parents[3] / "docs" / "tcp.md"


def test_transition_table_in_docs_is_current() -> None:
    text = DOC.read_text()
    start = text.index("<!-- transitions -->\n") + len("<!-- transitions -->\n")
    end = text.index("<!-- /transitions -->")
    assert text[start:end].strip() == render_table().strip(), \
        "regenerate with: python -c 'from rumpkernel.net.inet.tcp_fsm import render_table; " \
        "print(render_table())'"
