"""The documentation site builds with no broken link, and names every setting and every route.

Settings: every environment variable ``app/config.py`` reads has a row of its own in a table
of ``docs/configuration.md`` (its name, in backticks, is the row's first cell) and a line
``NAME=`` in ``.env.example``. A variable counts as read when its name is a string literal
passed right after the environment mapping to a reader (``_int(env, "DB_POOL_SIZE", ...)``,
``_raw(env, "PORT")``) or given to a mapping's ``get`` (``env.get("DEFAULT_MODEL")``,
``os.environ.get(...)``, ``os.getenv(...)``).

Routes: a route is written as the OpenAPI document spells its path, each ``<converter:name>``
of the Flask rule becoming ``{name}`` (``/conversations/<id:conversation_id>/export`` is
``/conversations/{conversation_id}/export``). It is documented when that path is a code span
of the REST API guide (``docs/api.md``) or of the OpenAI-compatibility page
(``docs/openai.md``), alone or followed by its query string (`` `/search?q=` `` documents
``/search``). The files the Swagger UI page loads (paths below ``/docs/``) are that page's
plumbing, not API, and are not required.

The pages are a reference, not a journal: README.md and docs/ name no issue number and date no
sentence by a working session ("this afternoon", "this session", "last stop"); dated runs live
in bench/results/.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import disposing, make_app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ROUTE_PAGES = ("api.md", "openai.md")
CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
JOURNAL = re.compile(
    r"\bissues? #?\d+|#\d+\b|this afternoon|this morning|this session|last stop", re.IGNORECASE
)


def _is_environment(node: ast.expr) -> bool:
    """``env`` (the mapping config.py's readers take) or ``os.environ``."""
    if isinstance(node, ast.Name):
        return node.id == "env"
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def settings_read_by_config() -> set[str]:
    """The environment variables app/config.py reads, found in its syntax tree."""
    names: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / "app" / "config.py").read_text())):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        getter = isinstance(function, ast.Attribute) and (
            (function.attr == "get" and _is_environment(function.value))
            or (
                function.attr == "getenv"
                and isinstance(function.value, ast.Name)
                and function.value.id == "os"
            )
        )
        if getter and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
        for mapping, name in zip(node.args, node.args[1:], strict=False):
            if _is_environment(mapping) and isinstance(name, ast.Constant):
                names.add(name.value)
    return names


def documented_settings() -> set[str]:
    """The names in the first cell of every table row of docs/configuration.md."""
    names: set[str] = set()
    for line in (DOCS / "configuration.md").read_text().splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def openapi_path(rule: str) -> str:
    """A Flask rule as OpenAPI spells it: ``<id:conversation_id>`` becomes ``{conversation_id}``."""
    return CONVERTER.sub(r"{\1}", rule)


def test_the_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    config = ROOT / "mkdocs.yml"
    built = subprocess.run(
        [str(mkdocs), "build", "--strict", "--config-file", str(config), "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )

    assert built.returncode == 0, built.stdout + built.stderr


def test_the_settings_config_reads_are_found():
    names = settings_read_by_config()

    assert len(names) >= 40
    assert {"DATABASE_URL", "OPENAI_BASE_URL", "PORT", "TOKEN_BUDGET_DAILY"} <= names


def test_every_setting_config_reads_has_a_row_in_the_configuration_page():
    missing = settings_read_by_config() - documented_settings()

    assert missing == set()


def test_every_setting_config_reads_is_in_env_example():
    example = (ROOT / ".env.example").read_text()
    missing = {
        name
        for name in settings_read_by_config()
        if not re.search(rf"^# ?{name}=", example, re.MULTILINE)
    }

    assert missing == set()


def test_every_route_is_in_the_api_guide_or_the_openai_page(tmp_path):
    with disposing(make_app(f"sqlite:///{tmp_path / 'routes.db'}")) as app:
        paths = {
            openapi_path(rule.rule)
            for rule in app.url_map.iter_rules()
            if not rule.rule.startswith("/docs/")
        }
    pages = "\n".join((DOCS / page).read_text() for page in ROUTE_PAGES)
    undocumented = {
        path for path in paths if not re.search(rf"`{re.escape(path)}(\?[^`]*)?`", pages)
    }

    assert "/conversations/{conversation_id}/messages/{message_id}/feedback" in paths
    assert undocumented == set()


def test_the_readme_and_the_docs_name_no_issue_and_keep_no_journal():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    journal_lines = [
        f"{page.name}:{number}: {line}"
        for page in pages
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if JOURNAL.search(line)
    ]

    assert journal_lines == []
