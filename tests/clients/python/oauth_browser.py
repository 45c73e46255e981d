"""A scripted browser for OAuth authorization flows, for the end-to-end tests.

It does what a person's browser does between an MCP client opening the authorization URL and
the authorization server redirecting back to the client: follow redirects itself, keep cookies
(per host, like a browser: ports do not separate cookies), answer our consent page by posting
its form with `decision=allow` (or `deny`), and let the identity provider's interactions run
(the loopback `oidc-provider` of tests/support/oidc_provider.mjs signs its test account in and
consents by itself). It stops at the first redirect whose Location starts with the client's
redirect URI and hands that URL back; it never requests it (nothing needs to listen there).

A loopback origin is treated as a secure context (browsers do the same for http://127.0.0.1
and http://localhost), so `Secure` cookies travel over plain http to loopback hosts.

Every step is recorded (method, URL, status, Location, and for HTML pages the consent form and
the page's security headers) so a test can assert on the flow, not only on its end.
"""

from __future__ import annotations

import html.parser
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx2

REDIRECTS = (301, 302, 303, 307, 308)


class BrowserError(Exception):
    """The flow did not reach the client's redirect URI; the message says where it stopped."""


# --------------------------------------------------------------------------- cookies


@dataclass
class _Cookie:
    name: str
    value: str
    host: str
    domain: str | None  # a Domain attribute: also sent to subdomains
    path: str
    secure: bool
    expires: float | None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class CookieJar:
    """RFC 6265 storage, reduced to what the flows here need: name/value per host (or Domain),
    Path prefix matching, Max-Age/Expires (deletion included), Secure."""

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], _Cookie] = {}

    def store(self, url: httpx2.URL, set_cookie_headers: list[str]) -> None:
        host = url.host.lower()
        for header in set_cookie_headers:
            parts = [p.strip() for p in header.split(";")]
            name, sep, value = parts[0].partition("=")
            if not sep or not name.strip():
                continue
            default_path = url.path.rsplit("/", 1)[0] or "/"
            cookie = _Cookie(name.strip(), value.strip(), host, None, default_path, False, None)
            for attribute in parts[1:]:
                key, _, val = attribute.partition("=")
                key = key.strip().lower()
                val = val.strip()
                if key == "path" and val.startswith("/"):
                    cookie.path = val
                elif key == "domain" and val:
                    cookie.domain = val.lstrip(".").lower()
                elif key == "secure":
                    cookie.secure = True
                elif key == "max-age":
                    try:
                        cookie.expires = time.time() + int(val)
                    except ValueError:
                        pass
                elif key == "expires" and cookie.expires is None:
                    from email.utils import parsedate_to_datetime

                    try:
                        cookie.expires = parsedate_to_datetime(val).timestamp()
                    except (TypeError, ValueError):
                        pass
            key = (cookie.domain or cookie.host, cookie.path, cookie.name)
            if cookie.expires is not None and cookie.expires <= time.time():
                self._cookies.pop(key, None)
            else:
                self._cookies[key] = cookie

    def header_for(self, url: httpx2.URL) -> str | None:
        host = url.host.lower()
        path = url.path or "/"
        secure_context = url.scheme == "https" or _is_loopback(host)
        now = time.time()
        pairs = []
        for cookie in self._cookies.values():
            if cookie.expires is not None and cookie.expires <= now:
                continue
            if cookie.domain is not None:
                if host != cookie.domain and not host.endswith("." + cookie.domain):
                    continue
            elif host != cookie.host:
                continue
            if not (path == cookie.path or path.startswith(cookie.path.rstrip("/") + "/")):
                continue
            if cookie.secure and not secure_context:
                continue
            pairs.append(f"{cookie.name}={cookie.value}")
        return "; ".join(pairs) if pairs else None

    def names(self) -> list[str]:
        return sorted({c.name for c in self._cookies.values()})


# --------------------------------------------------------------------------- HTML forms


class _FormParser(html.parser.HTMLParser):
    """Forms of a page: action, method, hidden inputs, submit buttons; and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, Any]] = []
        self._form: dict[str, Any] | None = None
        self._button: dict[str, str] | None = None
        self._skip = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "form":
            self._form = {
                "action": a.get("action", ""),
                "method": (a.get("method") or "get").lower(),
                "fields": [],
                "buttons": [],
            }
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None:
            kind = a.get("type", "text").lower()
            if kind == "submit" and a.get("name"):
                self._form["buttons"].append({"name": a["name"], "value": a.get("value", ""), "label": a.get("value", "")})
            elif a.get("name"):
                self._form["fields"].append((a["name"], a.get("value", ""), kind))
        elif tag == "button" and self._form is not None:
            self._button = {"name": a.get("name", ""), "value": a.get("value", ""), "label": ""}
            self._form["buttons"].append(self._button)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag == "form":
            self._form = None
        elif tag == "button":
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._button is not None:
            self._button["label"] += data.strip()
        if data.strip():
            self.text.append(" ".join(data.split()))


def parse_page(body: str) -> tuple[list[dict[str, Any]], str]:
    parser = _FormParser()
    parser.feed(body)
    parser.close()
    return parser.forms, " ".join(parser.text)


def consent_form(forms: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Our consent page's form: a POST form with `decision` buttons."""
    for form in forms:
        if form["method"] == "post" and any(b["name"] == "decision" for b in form["buttons"]):
            return form
    return None


# --------------------------------------------------------------------------- the browser


@dataclass
class Outcome:
    """Where a flow ended: the redirect to the client, and what was seen on the way."""

    redirect: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    consent_pages: list[dict[str, Any]] = field(default_factory=list)


_PAGE_HEADERS = ("content-type", "x-frame-options", "content-security-policy", "cache-control", "referrer-policy")


class Browser:
    """One browser profile: its cookies outlive a flow, so a second flow in the same browser
    finds the consent it gave before."""

    def __init__(self, decision: str = "allow", max_steps: int = 25) -> None:
        self.jar = CookieJar()
        self.decision = decision
        self.max_steps = max_steps

    async def authorize(self, url: str, redirect_uri: str, http: httpx2.AsyncClient | None = None) -> Outcome:
        """Opens `url` and walks the flow until a redirect to `redirect_uri`."""
        own = http is None
        client = http or httpx2.AsyncClient(follow_redirects=False, timeout=httpx2.Timeout(20.0))
        try:
            return await self._walk(client, url, redirect_uri)
        finally:
            if own:
                await client.aclose()

    async def _walk(self, client: httpx2.AsyncClient, url: str, redirect_uri: str) -> Outcome:
        outcome = Outcome(redirect="")
        method, data, referer = "GET", None, None
        for _ in range(self.max_steps):
            target = httpx2.URL(url)
            headers = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8", "user-agent": "mcpl-e2e-browser/1"}
            cookie = self.jar.header_for(target)
            if cookie:
                headers["cookie"] = cookie
            if method == "POST":
                headers["content-type"] = "application/x-www-form-urlencoded"
                if referer:
                    # A form post carries its page's origin, as browsers send it.
                    parts = urlsplit(referer)
                    headers["origin"] = f"{parts.scheme}://{parts.netloc}"
                    headers["referer"] = referer
            content = urlencode(data).encode() if data is not None else None
            response = await client.request(method, target, content=content, headers=headers)
            await response.aread()
            self.jar.store(target, response.headers.get_list("set-cookie"))
            step: dict[str, Any] = {"method": method, "url": url, "status": response.status_code}
            outcome.steps.append(step)

            if response.status_code in REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise BrowserError(f"{method} {url} answered {response.status_code} without a Location")
                location = urljoin(url, location)
                step["location"] = location
                if location.startswith(redirect_uri):
                    outcome.redirect = location
                    return outcome
                # 307/308 repeat the method; 301/302/303 turn a POST into a GET, as browsers do.
                if response.status_code not in (307, 308):
                    method, data = "GET", None
                referer = url
                url = location
                continue

            content_type = response.headers.get("content-type", "")
            body = response.text
            if response.status_code == 200 and "html" in content_type:
                forms, text = parse_page(body)
                step["page"] = {k: response.headers.get(k) for k in _PAGE_HEADERS}
                form = consent_form(forms)
                if form is not None:
                    fields = [(name, value) for name, value, _ in form["fields"]]
                    page = {
                        "url": url,
                        "action": urljoin(url, form["action"]),
                        "fields": {name: value for name, value in fields},
                        "buttons": [{"name": b["name"], "value": b["value"], "label": b["label"]} for b in form["buttons"]],
                        "text": text,
                        "headers": step["page"],
                    }
                    outcome.consent_pages.append(page)
                    if not any(b["value"] == self.decision for b in form["buttons"] if b["name"] == "decision"):
                        raise BrowserError(f"consent page at {url} has no decision={self.decision} button: {page}")
                    method, data, referer = "POST", [*fields, ("decision", self.decision)], url
                    url = page["action"]
                    continue
                # Another page with exactly one POST form (an identity provider's login or
                # confirmation page): submit it as it is.
                posts = [f for f in forms if f["method"] == "post"]
                if len(posts) == 1:
                    form = posts[0]
                    fields = [(name, value) for name, value, _ in form["fields"]]
                    if form["buttons"] and form["buttons"][0]["name"]:
                        fields.append((form["buttons"][0]["name"], form["buttons"][0]["value"]))
                    step["submitted"] = urljoin(url, form["action"])
                    method, data, referer = "POST", fields, url
                    url = urljoin(url, form["action"])
                    continue
            raise BrowserError(
                f"{method} {url} answered {response.status_code} ({content_type or 'no content type'}), "
                f"neither a redirect nor a page to act on: {body[:600]}"
            )
        raise BrowserError(f"no redirect to {redirect_uri} after {self.max_steps} steps: {outcome.steps}")
