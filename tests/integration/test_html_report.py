"""The static HTML report (issue 19, item 4): ``evalsuite report RUN_DIRS --out site/``. The pages are parsed with
html.parser for the rows, cells, flags and links; then loaded in headless chromium (Debian's, driven by playwright:
skipped when either is absent) to check the rows, that a header click sorts, and that nothing is fetched from a
network, with a screenshot under the test's tmp dir."""

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_plots import add_intervals, write_custom_run
from test_reporting import CATALOG, REPORT, write_synthetic_run

from evalsuite.cli import main

MODEL = "EVA-CLIP-18B"
CUSTOM = {"logos": 0.62, "signs": 0.48}


class Page(HTMLParser):
    """Tables (id -> header texts, rows of cells with their attributes), links, images, scripts and stylesheets."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.links, self.images, self.scripts, self.stylesheets = [], [], [], []
        self._table = self._row = self._cell = None
        self._n = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._n += 1
            self._table = self.tables.setdefault(a.get("id") or f"table{self._n}", {"head": [], "rows": []})
        elif tag == "tr" and self._table is not None:
            self._row = {"attrs": a, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"tag": tag, "attrs": a, "text": ""}
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "link":
            self.stylesheets.append(a)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if all(c["tag"] == "th" for c in self._row["cells"]):
                self._table["head"] = [c["text"] for c in self._row["cells"]]
            else:
                self._table["rows"].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def cells_by_header(table: dict, row: dict) -> dict:
    return dict(zip(table["head"], row["cells"]))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Three runs: EVA-CLIP-18B at the paper's values but dtd +0.6 pp, a 1,000-image imagenet1k and a partial
    cifar10, with bootstrap intervals; EVA-CLIP-8B at the paper's values; a run of user-defined tasks."""
    root = tmp_path_factory.mktemp("report")
    runs = root / "runs"
    add_intervals(write_synthetic_run(runs / MODEL, MODEL, nudge={"dtd": {"acc1": 0.6}}, counts={"imagenet1k": 1000},
                                      partial={"cifar10"}))
    write_synthetic_run(runs / "EVA-CLIP-8B", "EVA-CLIP-8B")
    write_custom_run(root / "mine" / "my-clip", "my-clip", CUSTOM, counts={"signs": 150}, expected=200)
    out = root / "site"
    assert main(["report", str(runs), str(root / "mine"), "--out", str(out), "--reference", REPORT]) == 0
    return out


def read(site: Path, name: str = "index.html") -> Page:
    return Page((site / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# without a browser


def test_leaderboard_rows_cells_and_flags(site):
    page = read(site)
    board = page.tables["leaderboard"]
    assert board["head"][:4] == ["model", "params (M)", "eva_cls27 avg", "imagenet_variants avg"]
    tasks = board["head"][board["head"].index("eva_retrieval avg") + 1:-1]
    assert tasks[:3] == ["imagenet1k", "imagenetv2", "imagenet_a"] and tasks[-2:] == ["logos", "signs"]
    assert board["head"][-1] == "flags"
    rows = {r["attrs"]["data-model"]: r for r in board["rows"]}
    assert set(rows) == {MODEL, "EVA-CLIP-8B", "my-clip"}

    big = cells_by_header(board, rows[MODEL])
    assert rows[MODEL]["attrs"]["class"].split() == ["partial", "count-mismatch"]
    assert big["params (M)"]["text"] == "18,325"
    imagenet = big["imagenet1k"]
    assert imagenet["text"] == "83.80†" and set(imagenet["attrs"]["class"].split()) == {"refused", "flag-count"}
    assert "1000 samples of 50000 expected; count_status fewer" in imagenet["attrs"]["title"]
    assert "refused by check: count fewer" in imagenet["attrs"]["title"]
    dtd = big["dtd"]
    assert dtd["attrs"]["class"] == "delta-above" and float(dtd["attrs"]["data-value"]) == pytest.approx(72.7)
    title = dtd["attrs"]["title"]
    assert "95% interval 72.30–73.10" in title and "delta +0.60 pp, tolerance 0.5" in title
    assert "protocol decoder=pil;precision=amp_fp16;transform=best-of-both" in title
    assert big["cifar10"]["text"].endswith("‡") and "flag-partial" in big["cifar10"]["attrs"]["class"]
    assert big["imagenetv2"]["attrs"]["class"] == "delta-within"
    assert big["eva_cls27 avg"]["text"].endswith("†‡") and "refused" in big["eva_cls27 avg"]["attrs"]["class"]
    assert big["eva_video avg"]["attrs"]["class"] == "delta-within"
    assert big["flags"]["text"].split() == ["imagenet1k:fewer(1000/50000)", "cifar10:limit(10000/10000)"]
    assert big["logos"]["text"] == "–" and big["logos"]["attrs"]["data-value"] == ""

    eight = cells_by_header(board, rows["EVA-CLIP-8B"])
    assert "class" not in rows["EVA-CLIP-8B"]["attrs"] and eight["flags"]["text"] == ""
    assert all(eight[t]["attrs"]["class"] == "delta-within" for t in CATALOG.suite_members("eva_cls27"))

    mine = cells_by_header(board, rows["my-clip"])
    assert mine["logos"]["text"] == "62.00" and "class" not in mine["logos"]["attrs"]  # no reference for it
    assert "no reference value" in mine["logos"]["attrs"]["title"]
    assert mine["signs"]["text"] == "48.00†" and mine["flags"]["text"] == "signs:fewer(150/200)"
    assert rows["my-clip"]["attrs"]["class"] == "count-mismatch"
    assert mine["eva_cls27 avg"]["text"] == "–" and mine["params (M)"]["text"] == "–"


def test_pages_are_self_contained_with_plots_and_model_pages(site):
    page = read(site)
    html_text = (site / "index.html").read_text()
    assert "http://" not in html_text and "https://" not in html_text and not page.stylesheets
    assert page.scripts and all("src" not in s for s in page.scripts)  # the sorting script is inline
    assert sorted(page.images) == ["runs.png", "scaling.png"]
    model_pages = [h for h in page.links if h.startswith("model-") and h.endswith(".html")]
    assert len(model_pages) == 3
    for name in page.images + model_pages:
        assert (site / name).is_file(), name
    for name in model_pages:
        sub = read(site, name)
        assert "index.html" in sub.links
        for image in sub.images:
            assert (site / image).stat().st_size > 10_000
    pages = {name: read(site, name) for name in model_pages}
    (big,) = [p for n, p in pages.items() if n == f"model-{MODEL}.html"]
    assert sorted(big.images) == [f"model-{MODEL}-deltas.png", f"model-{MODEL}-tasks.png"]
    tasks = big.tables["tasks"]
    assert len(tasks["rows"]) == 27 + 4 + 2
    rows = {r["attrs"]["data-task"]: cells_by_header(tasks, r) for r in tasks["rows"]}
    assert rows["imagenet1k"]["count_status"]["text"] == "fewer" and rows["imagenet1k"]["samples"]["text"] == "1000"
    assert rows["imagenet1k"]["expected"]["text"] == "50000"
    assert rows["cifar10"]["partial"]["text"] == "yes"
    assert rows["mscoco"]["protocol"]["text"] == "decoder=pil;precision=amp_fp16;transform=squash"
    assert rows["mscoco"]["captions"]["text"] == "25010 / 25010" and rows["mscoco"]["metric"]["text"] == "mean_recall"
    assert rows["dtd"]["95% interval"]["text"] == "72.30–73.10" and "acc5" not in rows["dtd"]["other metrics"]["text"]
    mine = pages["model-my-clip.html"]
    assert mine.images == ["model-my-clip-tasks.png"]  # no reference values: no delta plot
    (logos,) = [r for r in mine.tables["tasks"]["rows"] if r["attrs"]["data-task"] == "logos"]
    assert "acc5 72.00" in cells_by_header(mine.tables["tasks"], logos)["other metrics"]["text"]


def test_report_on_user_defined_tasks_only_and_names_are_escaped(tmp_path, capsys):
    write_custom_run(tmp_path / "runs" / "evil", "x<script>alert(1)</script>", CUSTOM)
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "site")]) == 0
    assert "1 run(s) ->" in capsys.readouterr().out
    text = (tmp_path / "site" / "index.html").read_text()
    assert "<script>alert" not in text and "x&lt;script&gt;alert(1)&lt;/script&gt;" in text
    page = Page(text)
    (row,) = page.tables["leaderboard"]["rows"]
    assert [c["text"] for c in row["cells"][2:4]] == ["62.00", "48.00"]
    assert all(Path(tmp_path / "site" / h).is_file() for h in page.links if h.startswith("model-"))


# ---------------------------------------------------------------------------------------------------------------
# in a real headless browser


def _chromium() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # absent, or a broken install
        pytest.skip(f"playwright cannot be imported ({exc}); pip install playwright (the dev extra has it)")
    path = os.environ.get("EVALSUITE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no chromium executable (Debian: apt-get install chromium; or set EVALSUITE_CHROMIUM)")
    return path


def test_leaderboard_in_headless_chromium(site, tmp_path):
    executable = _chromium()  # skips without playwright or chromium, before importing playwright
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - a chromium that cannot start here (no display libs, sandbox)
            pytest.skip(f"chromium at {executable} did not start: {exc}")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors, remote = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: remote.append(r.url) if not r.url.startswith("file://") else None)
            page.goto((site / "index.html").as_uri())
            rows = page.locator("#leaderboard tbody tr")
            assert rows.count() == 3

            def order() -> list[str]:
                return page.eval_on_selector_all("#leaderboard tbody tr", "rs => rs.map(r => r.dataset.model)")

            def values(header: str) -> list:
                i = page.eval_on_selector_all("#leaderboard thead th", "hs => hs.map(h => h.textContent)").index(header)
                return page.eval_on_selector_all(
                    "#leaderboard tbody tr", f"rs => rs.map(r => [r.dataset.model, r.cells[{i}].dataset.value])")

            assert order() == [MODEL, "EVA-CLIP-8B", "my-clip"]
            dtd = page.locator("#leaderboard thead th", has_text="dtd").first
            dtd.click()  # numbers: best first, empty cells last
            expected = [m for m, v in sorted(values("dtd"), key=lambda mv: (mv[1] == "", -float(mv[1] or 0)))]
            assert order() == expected == [MODEL, "EVA-CLIP-8B", "my-clip"]
            assert dtd.get_attribute("aria-sort") == "descending"
            page.locator("#leaderboard thead th", has_text="eurosat").first.click()
            eurosat = {m: float(v) for m, v in values("eurosat") if v}
            assert eurosat[MODEL] > eurosat["EVA-CLIP-8B"] and order()[:2] == [MODEL, "EVA-CLIP-8B"]
            page.locator("#leaderboard thead th", has_text="eurosat").first.click()  # again: ascending, empty last
            assert order() == ["EVA-CLIP-8B", MODEL, "my-clip"]
            page.locator("#leaderboard thead th", has_text="logos").first.click()
            assert order()[0] == "my-clip"
            page.locator("#leaderboard thead th", has_text="model").first.click()  # text: A to Z first
            assert order() == ["EVA-CLIP-18B", "EVA-CLIP-8B", "my-clip"]
            title = page.locator(f"#leaderboard tr[data-model='{MODEL}'] td[title*='dtd acc1']").get_attribute("title")
            assert "95% interval 72.30–73.10" in title
            assert page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.evaluate("() => { document.querySelector('.scroll').scrollLeft = 0; }")
            shot = tmp_path / "leaderboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            page.goto((site / f"model-{MODEL}.html").as_uri())
            assert page.locator("#tasks tbody tr").count() == 33
            assert page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(tmp_path / "model.png"), full_page=True)
            assert not errors and not remote, (errors, remote)
        finally:
            browser.close()
