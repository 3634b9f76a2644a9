"""The README's embedding example runs as written and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re

from tests.conftest import ROOT


def test_the_embedding_example_in_the_readme_runs() -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "README.md", "exec"), {"__name__": "readme"})  # noqa: S102
    lines = out.getvalue().splitlines()
    assert lines[0] == "{'amount': 4497, 'currency': 'USD'}"
    assert lines[1] == "[('ok', None), ('ok', None)]"
    assert lines[2].startswith("paid ") and "'sold': 2" in lines[2]
