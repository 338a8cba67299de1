"""The documentation keeps up with the code: every reason code, setting and route is written down."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from policies import ALL_REASON_CODES

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CHANGELOG = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
PARAM = re.compile(r"\{[^}]*\}")


@pytest.mark.parametrize("code", sorted(ALL_REASON_CODES))
def test_every_reason_code_is_explained_in_the_readme(code: str) -> None:
    assert re.search(rf"^\| `{code}` \|", README, re.M), f"README has no row for reason code {code}"


@pytest.mark.parametrize("field", [f.name for f in msgspec.structs.fields(Settings)])
def test_every_setting_is_documented(field: str) -> None:
    assert f"CGW_{field.upper()}" in README, f"README does not document CGW_{field.upper()}"


def _paths() -> list[str]:
    paths = {route.path for route in create_app(Settings()).routes}
    return sorted(p for p in paths if p.startswith("/v1/"))


@pytest.mark.parametrize("path", _paths())
def test_every_route_is_in_the_changelog(path: str) -> None:
    """A route's last segment (or its whole path) appears in CHANGELOG.md, so adding one means saying so."""
    plain = PARAM.sub("{}", path)
    last = "/" + plain.rsplit("/", 1)[1]
    assert plain in PARAM.sub("{}", CHANGELOG) or f"`{last}`" in CHANGELOG, (
        f"CHANGELOG.md does not mention {path}"
    )


def _documented_operations() -> list[tuple[str, str, str | None]]:
    return sorted(
        (route.path, method, handler.summary)
        for route in create_app(Settings()).routes
        for handler in getattr(route, "route_handlers", [])
        if handler.include_in_schema
        and route.path.startswith(("/v1/", "/healthz", "/readyz", "/metrics", "/.well"))
        for method in handler.http_methods
        if method != "OPTIONS"
    )


@pytest.mark.parametrize(("path", "method", "summary"), _documented_operations())
def test_every_operation_says_what_it_does_in_the_openapi_document(
    path: str, method: str, summary: str | None
) -> None:
    """`/schema` is the API's reference: a summary there is a sentence, not the handler's name."""
    assert summary is not None, f"{method} {path} has no summary"
    assert " " in summary, f"{method} {path}: {summary!r} reads as a name, not what the operation does"
