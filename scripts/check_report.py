"""Drive a report.html in headless Chromium: the interactions work, offline, and look right.

    .venv/bin/python scripts/check_report.py DIR_OR_REPORT_HTML [SCREENSHOT_DIR]

Opens the page with every request that is not file: or data: refused, then sorts the
results table, filters it, hovers over a point of Figure 1, searches a token in the
explorer, draws a per-class histogram (σ², the token marked; a bar hovered), picks an
inner layer where the explorer offers one and saves both downloads, taking screenshots
before and after each (into SCREENSHOT_DIR, else $LINGCOLLAPSE_SCREENSHOTS, else a
temporary dir). Prints what it saw as JSON and exits 1 when a check fails. Needs
Playwright for Python (``pip install playwright``) and a Chromium at /usr/bin/chromium
(``apt-get install chromium``; ``playwright install`` is not needed).
``tests/test_report_browser.py`` runs the same :func:`drive` and asserts its values.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def drive(page_path: Path, shots: Path, sort_by: str = "val_loss") -> dict:
    """Run the interactions on one page; returns what was seen (see the keys)."""
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    seen: dict = {"errors": [], "refused": [], "shots": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.route("**/*", lambda route: _offline(route, seen))
            page.goto(Path(page_path).resolve().as_uri())
            _shot(page, shots, "1-top", seen)
            _sort(page, shots, sort_by, seen)
            _filter(page, seen)
            _hover(page, shots, seen)
            _token(page, shots, seen)
            _histogram(page, shots, seen)
            _layer(page, shots, seen)
            _downloads(page, seen)
            seen["charts"] = page.locator("svg.lc-chart").count()
        finally:
            browser.close()
    return seen


def _offline(route, seen: dict) -> None:
    url = route.request.url
    if url.startswith(("file:", "data:", "blob:")):
        route.continue_()
    else:
        seen["refused"].append(url)
        route.abort()


def _shot(page, shots: Path, name: str, seen: dict) -> None:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path))
    seen["shots"].append(str(path))


def _models(page) -> list[str]:
    return page.eval_on_selector_all(
        "table.results tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.model)"
    )


def _sort(page, shots: Path, column: str, seen: dict) -> None:
    """Click the header of ``column`` (twice: ascending, then descending)."""
    page.locator("#results").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('results').scrollIntoView()")
    seen["order_before"] = _models(page)
    _shot(page, shots, "2-before-sort", seen)
    header = page.locator("table.results thead th", has_text=column).first
    header.click()
    seen["order_ascending"] = _models(page)
    seen["aria_sort"] = header.get_attribute("aria-sort")
    header.click()
    seen["order_descending"] = _models(page)
    seen["aria_sort_again"] = header.get_attribute("aria-sort")
    _shot(page, shots, "3-after-sort", seen)


def _filter(page, seen: dict) -> None:
    box = page.locator(".lc-tools input[type=search]").nth(_results_filter_index(page))
    target = seen["order_before"][-1]
    box.fill(target)
    seen["filtered"] = _models(page)
    box.fill("")


def _results_filter_index(page) -> int:
    """Which filter box belongs to the results table (they come in page order)."""
    return page.evaluate(
        """() => { const boxes = [...document.querySelectorAll('.lc-tools')];
        const table = document.querySelector('table.results').closest('.scroll');
        return boxes.findIndex(b => b.nextElementSibling === table); }"""
    )


def _hover(page, shots: Path, seen: dict) -> None:
    point = page.locator("svg.fig use[data-model]").first
    if point.count() == 0:
        return
    point.scroll_into_view_if_needed()
    seen["hover_model"] = point.get_attribute("data-model")
    point.hover(force=True)
    page.wait_for_selector("#lc-tip:not([hidden])")
    seen["tooltip"] = page.inner_text("#lc-tip")
    seen["highlighted_points"] = page.locator("svg.fig use.lc-hl").count()
    seen["highlighted_rows"] = page.locator("table.results tr.lc-hl").count()
    _shot(page, shots, "4-hover", seen)
    page.mouse.move(2, 2)


def _token(page, shots: Path, seen: dict) -> None:
    """Search the third most frequent token of the first model, exactly."""
    if page.locator("#lc-tok-q").count() == 0:
        return
    token = page.evaluate(
        "() => { const i = JSON.parse(document.getElementById('lc-token-index').textContent);"
        " const v = JSON.parse(document.getElementById(i[0].id).textContent);"
        " return v.data.token[Math.min(2, v.data.token.length - 1)]; }"
    )
    page.locator("#lc-explorer").scroll_into_view_if_needed()
    _shot(page, shots, "5-before-token-search", seen)
    page.select_option("#lc-tok-mode", "exact")
    page.fill("#lc-tok-q", token)
    page.wait_for_function(
        "t => { const h = document.getElementById('lc-tok-heading');"
        " return h && h.textContent.includes(JSON.stringify(t).slice(1, -1)); }",
        arg=token,
    )
    seen["token"] = token
    seen["token_heading"] = page.inner_text("#lc-tok-heading")
    seen["token_facts"] = dict(
        page.eval_on_selector_all(
            "#lc-tok-facts tr", "rows => rows.map(r => [r.dataset.column, r.cells[1].textContent])"
        )
    )
    for kind in ("nearest", "interfering"):
        seen[f"token_{kind}"] = page.eval_on_selector_all(
            f"#lc-tok-{kind} tbody tr", "rows => rows.map(r => Number(r.cells[2].dataset.id))"
        )
    page.locator("#lc-tok-detail").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('lc-tok-q').scrollIntoView()")
    _shot(page, shots, "6-after-token-search", seen)


def _histogram(page, shots: Path, seen: dict) -> None:
    """The histogram of σ² over all classes, the searched token marked; hover a bar."""
    if page.locator("#lc-hist-col").count() == 0:
        return
    seen["hist_default"] = page.evaluate(
        "() => [document.getElementById('lc-hist-col').value,"
        " document.getElementById('lc-hist-log').checked]"
    )
    page.select_option("#lc-hist-col", "sigma2")
    chart = "#lc-hist-chart svg"
    seen["hist_bars"] = page.locator(f"{chart} rect.bar").count()
    seen["hist_counts"] = page.eval_on_selector_all(
        f"{chart} rect.bar", "bars => bars.map(b => Number(b.dataset.count))"
    )
    marks = page.locator(f"{chart} line.lc-mark")
    seen["hist_marks"] = marks.count()
    if marks.count():
        seen["hist_mark_value"] = float(marks.first.get_attribute("data-value"))
    seen["hist_caption"] = page.inner_text("#lc-hist-caption")
    fullest = max(range(len(seen["hist_counts"])), key=seen["hist_counts"].__getitem__)
    page.locator(f"{chart} rect.hit").nth(fullest).hover(force=True)
    page.wait_for_selector("#lc-tip:not([hidden])")
    seen["hist_tooltip"] = page.inner_text("#lc-tip")
    page.locator("#lc-hist").scroll_into_view_if_needed()
    _shot(page, shots, "7-histogram", seen)
    page.mouse.move(2, 2)


def _layer(page, shots: Path, seen: dict) -> None:
    """Pick the first inner layer where the first model has one; the token stays chosen."""
    options = page.eval_on_selector_all("#lc-tok-layer option", "os => os.map(o => o.textContent)")
    seen["layer_options"] = options
    if len(options) < 2:
        return
    page.select_option("#lc-tok-layer", "0")
    seen["layer_info"] = page.inner_text("#lc-tok-info")
    if page.locator("#lc-tok-heading").is_visible():
        seen["layer_heading"] = page.inner_text("#lc-tok-heading")
    seen["layer_hist_caption"] = page.inner_text("#lc-hist-caption")
    page.locator("#lc-explorer").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('lc-tok-q').scrollIntoView()")
    _shot(page, shots, "8-layer", seen)


def _downloads(page, seen: dict) -> None:
    seen["downloads"] = {}
    links = page.locator("a[download]")
    for i in range(links.count()):
        link = links.nth(i)
        link.scroll_into_view_if_needed()
        with page.expect_download() as info:
            link.click()
        download = info.value
        seen["downloads"][download.suggested_filename] = Path(download.path()).read_bytes()


def problems(seen: dict) -> list[str]:
    """What a page that works must show, checked on the observations alone."""
    out = []
    if seen["errors"]:
        out.append(f"console errors: {seen['errors']}")
    if seen["refused"]:
        out.append(f"requests out of the page: {seen['refused']}")
    if sorted(seen["order_ascending"]) != sorted(seen["order_before"]):
        out.append("sorting lost or added rows")
    if seen["order_descending"] != seen["order_ascending"][::-1] and len(
        set(seen["order_ascending"])
    ) == len(seen["order_ascending"]):
        out.append("the second click did not reverse the order")
    if seen.get("aria_sort") != "ascending" or seen.get("aria_sort_again") != "descending":
        out.append("the header shows no sort direction")
    if seen["filtered"] != [seen["order_before"][-1]]:
        out.append(f"filtering by a model name left {seen['filtered']}")
    if "hover_model" in seen and seen["hover_model"] not in seen.get("tooltip", ""):
        out.append("the tooltip does not name the hovered model")
    if "token" in seen and not seen.get("token_nearest"):
        out.append("the token search showed no neighbours")
    if "hist_bars" in seen and (not seen["hist_bars"] or seen.get("hist_marks") != 1):
        out.append("the histogram has no bars or does not mark the token")
    if "hist_tooltip" in seen and " in [" not in seen["hist_tooltip"]:
        out.append("hovering a histogram bar shows no range")
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    target = Path(argv[0])
    page = target / "report.html" if target.is_dir() else target
    if not page.is_file():
        print(f"error: {page} not found (run lingcollapse report DIR first)", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).is_file():
        print(f"error: no Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    default = os.environ.get("LINGCOLLAPSE_SCREENSHOTS") or tempfile.mkdtemp(prefix="report-")
    shots = Path(argv[1] if len(argv) > 1 else default)
    seen = drive(page, shots)
    found = problems(seen)
    shown = {k: v for k, v in seen.items() if k != "downloads"}
    shown["downloads"] = {k: len(v) for k, v in seen.get("downloads", {}).items()}
    print(json.dumps(shown, indent=1, ensure_ascii=False))
    for p in found:
        print(f"error: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
