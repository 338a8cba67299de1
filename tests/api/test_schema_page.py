"""`/schema`, Swagger UI, is served whole from this origin: its page names no other host, its
assets come from the pinned `swagger-ui-bundle-v2` package under `/schema/assets/`, and its
Content-Security-Policy runs only those files and the page's own inline script and style, by hash.

Before, the page loaded Swagger UI (and a favicon) from a CDN without integrity hashes, so a
developer's browser ran whatever the CDN served and told the CDN who was looking."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from litestar import Litestar
from litestar.testing import TestClient

Client = TestClient[Litestar]
PAGES = ["/schema", "/schema/swagger"]


class _Page(HTMLParser):
    """Every URL the page's markup refers to, and the text of each inline script and style, as
    the browser hashes it (the raw text between the tags)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.urls: list[str] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.urls += [value for name, value in attrs if name in {"src", "href", "action", "srcset"} and value]
        if tag in self.inline and not found.get("src"):
            self._open = tag
            self.inline[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.inline[self._open][-1] += data


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _directives(policy: str) -> dict[str, list[str]]:
    return {name: rest for name, *rest in (part.split() for part in policy.split(";") if part.strip())}


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.parametrize("path", PAGES)
def test_the_page_names_no_other_origin(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    page = _parse(response.text)
    assert page.urls, "the page refers to its scripts and styles"
    for url in page.urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert url.startswith("/schema/"), url
    document = client.get("/schema/openapi.json").text
    assert document in response.text, "the page embeds the document as served"
    # The document's own text may one day link a reference in a description; the page may not.
    elsewhere = re.findall(r"(?:https?:)?//[\w.-]+", response.text.replace(document, "{}"))
    assert elsewhere == [], "no absolute or protocol-relative URL in the page"


@pytest.mark.parametrize("path", PAGES)
def test_every_asset_the_page_names_is_served_from_here(client: Client, path: str) -> None:
    kinds = {".css": "text/css", ".png": "image/png", ".js": "javascript"}
    urls = _parse(client.get(path).text).urls
    assert urls, "the page names its assets, so the loop below checks something"
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert kinds["." + url.rsplit(".", 1)[-1]] in asset.headers["content-type"], url
        assert asset.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
def test_the_policy_admits_the_page_own_inline_code_and_nothing_else(client: Client, path: str) -> None:
    response = client.get(path)
    page = _parse(response.text)
    policy = _directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"][0] == "'self'"
    assert sorted(policy["script-src"][1:]) == sorted({_sha256(script) for script in page.inline["script"]})
    assert len(policy["script-src"]) == 2, "one inline script: Swagger UI's initialisation"
    assert policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["style-src"][0] == "'self'"
    assert sorted(policy["style-src"][1:]) == sorted({_sha256(style) for style in page.inline["style"]})
    for name, sources in policy.items():
        assert not any(source.startswith("'unsafe-") for source in sources), name
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_a_changed_inline_script_would_not_run(client: Client) -> None:
    """The hash is of the script as served: the policy names no other."""
    response = client.get("/schema")
    script = _parse(response.text).inline["script"][0]
    assert _sha256(script) in response.headers["content-security-policy"]
    assert _sha256(script + " ") not in response.headers["content-security-policy"]


def test_the_document_and_the_assets_carry_a_policy_too(client: Client) -> None:
    for path in ["/schema/openapi.json", "/schema/assets/swagger-ui-bundle.js", "/schema/nowhere"]:
        response = client.get(path)
        policy = _directives(response.headers["content-security-policy"])
        assert policy["default-src"] == ["'none'"], path
        assert policy["frame-ancestors"] == ["'none'"], path
        assert all("sha256" not in source for source in policy.get("script-src", [])), path
