"""The documentation: the README stays a short front door that names every command and links only
to pages of the site; the speed page's figures name keys their result files hold; and the site,
built strictly, shows every field of every configuration model in its generated reference."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 260
LINK = re.compile(r"\]\(([^)\s]+)\)")
WEB = ("https://", "http://")


def readme_links() -> list[str]:
    return LINK.findall(README.read_text())


def nav_pages(entry: Any = None) -> set[str]:
    """Every page file named in mkdocs.yml's `nav`, however deep the sections."""
    if entry is None:
        entry = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    if isinstance(entry, str):
        return {entry}
    values = entry.values() if isinstance(entry, dict) else entry
    return set().union(*(nav_pages(value) for value in values))


def test_the_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines: move detail to docs/"


def test_the_readme_links_only_to_pages_of_the_site() -> None:
    pages = nav_pages()
    local = [link for link in readme_links() if not link.startswith(WEB)]
    assert local, "the README links to no page of the site"
    for link in local:
        path = link.partition("#")[0]
        assert path.startswith("docs/") and path.endswith(".md"), f"{link}: not a docs page"
        page = path.removeprefix("docs/")
        assert (DOCS / page).is_file(), f"{link}: no such page"
        assert page in pages, f"{link}: not in mkdocs.yml's nav"


def test_the_readme_names_every_command() -> None:
    from flows.cli import app

    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    text = README.read_text()
    assert commands
    assert not [name for name in sorted(commands) if f"`perennial {name}" not in text]


def test_the_readme_names_only_make_targets_that_exist() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    # `make X` in prose, or a line of a code block that starts with make X
    named = set(re.findall(r"(?:`|^)make ([a-z][a-z-]*)", README.read_text(), re.M))
    assert {"demo", "test", "docs"} <= named
    assert named <= targets, named - targets


def holds(data: Any, path: list[str]) -> bool:
    """Whether the dotted key path is in the data; `*` stands for every key of a mapping."""
    if not path:
        return True
    head, rest = path[0], path[1:]
    if not isinstance(data, dict) or not data:
        return False
    if head == "*":
        return all(holds(value, rest) for value in data.values())
    return head in data and holds(data[head], rest)


def test_each_speed_figure_names_keys_its_file_holds() -> None:
    row = re.compile(r"\[(?P<file>[\w.]+\.json)\]\(results/(?P=file)\)(?P<keys>(?:,? `[^`]+`)+)")
    cited = [
        (match["file"], key)
        for match in row.finditer((DOCS / "speed.md").read_text())
        for key in re.findall(r"`([^`]+)`", match["keys"])
    ]
    assert len(cited) >= 10, cited
    for file, key in cited:
        data = json.loads((ROOT / "benchmarks" / "results" / file).read_text())
        assert holds(data, key.split(".")), f"speed.md cites {key}, which {file} does not hold"


def config_models() -> list[type[BaseModel]]:
    """PerennialConfig and every model its fields hold, however deep."""
    from tasks.core.config import PerennialConfig

    found: list[type[BaseModel]] = []
    todo: list[Any] = [PerennialConfig]
    while todo:
        annotation = todo.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
                todo.extend(field.annotation for field in annotation.model_fields.values())
        else:
            todo.extend(typing.get_args(annotation))
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return out


@pytest.mark.slow
def test_the_reference_shows_every_field_of_every_config_model(site: Path) -> None:
    html = (site / "reference" / "index.html").read_text()
    models = config_models()
    assert len(models) > 10, models  # the nested sections were found, not only the top model
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        # mkdocstrings gives each rendered field the id <module>.<model>.<field>
        if f'id="{model.__module__}.{model.__name__}.{name}"' not in html
    ]
    assert not missing, f"not in the configuration reference: {missing}"


@pytest.mark.slow
def test_the_readme_anchors_exist_in_the_site(site: Path) -> None:
    for link in readme_links():
        path, _, anchor = link.partition("#")
        if link.startswith(WEB) or not anchor:
            continue
        stem = Path(path).stem
        page = site / "index.html" if stem == "index" else site / stem / "index.html"
        assert f'id="{anchor}"' in page.read_text(), f"{link}: no such anchor"
