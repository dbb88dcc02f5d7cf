"""The HTML report in a real browser (issue 11 item 4): Debian's Chromium, headless, loads the page
with nothing reachable on the network; every table and every figure must be laid out with a size
and every figure image decoded; a screenshot of the page must not be blank.

Chromium comes from the distribution's packages: the set-up installs it (``apt-get install -y
chromium``) when it is absent and this process may; otherwise the test is skipped with the reason.
"""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from llama_audit.analyzers.toxicity import ToxicityAnalyzer
from llama_audit.analyzers.toxicity.summary import fold_scores
from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.render import render_html
from llama_audit.report.section import ReportContext
from llama_audit.report.tables import build_report

pytest.importorskip("matplotlib", reason="figures need the report extra: pip install 'llama-audit[report]'")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND"]  # nothing on the network can be reached
#: what the test adds to its copy of the page (the page itself has no script): each table's and
#: figure's laid-out size, and whether each image decoded, written into the DOM that --dump-dom prints
LAYOUT_PROBE = """<script>window.addEventListener('load', function () {
  var box = function (e) { var r = e.getBoundingClientRect(), s = getComputedStyle(e);
    return {w: r.width, h: r.height, shown: s.visibility === 'visible' && s.display !== 'none'}; };
  var out = {tables: [], images: []};
  document.querySelectorAll('table').forEach(function (t) { out.tables.push(box(t)); });
  document.querySelectorAll('figure img, figure svg').forEach(function (i) {
    var b = box(i); b.decoded = i.tagName !== 'IMG' || (i.complete && i.naturalWidth > 0); out.images.push(b); });
  var pre = document.createElement('pre'); pre.id = 'layout-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre); });</script>"""


def chromium_or_skip() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be installed here (needs apt-get as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, timeout=900)
    if done.returncode != 0:  # a fresh image without package lists
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(install, env=env, capture_output=True, timeout=900)
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"apt-get install chromium failed: {done.stderr.decode(errors='replace')[-300:]}")
    return found


def chromium(binary: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=60, check=True)


class Elements(HTMLParser):
    """Tags of a page and the attributes of its images."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.image_sources: list[str] = []
        self.remote: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and re.match(r"(https?:)?//", value) and tag != "a":
                self.remote.append(value)
        if tag == "img":
            self.image_sources.append(dict(attrs).get("src") or "")


@pytest.fixture
def report(tmp_path, make_jsonl):
    """A scan of a small mixed corpus, with a toxicity section made by the analyzer's own report
    code from folded document scores (no model needed): every built-in figure is drawn."""
    make_jsonl("a.jsonl", [{"id": i, "text": t} for i, t in enumerate([
        "She is a Christian woman who lives in the city with her family and friends.",
        "He is an American engineer working on bridges and tunnels in the mountains.",
        "They met a Catholic priest and a Jewish teacher; I told you about them yesterday.",
        "Ceci est un texte en français sur la cuisine et les voyages en Europe.",
    ] * 3)])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=["language", "pronouns", "identities"]))
    data = build_report(str(tmp_path / "out"))
    scores = np.concatenate([np.random.default_rng(0).beta(1, 25, 1000), [0.6, 0.9]])
    counts = fold_scores(scores, np.ones_like(scores), (scores >= 0.5).astype(float))
    data["toxicity"] = ToxicityAnalyzer.report_section(
        counts, ReportContext(config={"model": "stub"}, corpus=data["corpus"], options=None))
    return data


def test_every_table_and_figure_is_visible_in_chromium(report, tmp_path):
    binary = chromium_or_skip()
    html = render_html(report)
    page = Elements()
    page.feed(html)
    assert "script" not in page.tags and page.remote == []  # JS-free, self-contained
    tables, figures = page.tags.count("table"), page.tags.count("figure")
    assert tables >= 5 and figures == 4  # corpus, 9a, 9b, 10, toxicity; and their four figures
    assert all(src.startswith("data:image/") for src in page.image_sources)

    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    dom = chromium(binary, tmp_path, "--dump-dom", probed.as_uri()).stdout
    layout = json.loads(re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    assert len(layout["tables"]) == tables and len(layout["images"]) == figures
    for item in layout["tables"] + layout["images"]:
        assert item["shown"] and item["w"] > 100 and item["h"] > 20, item
    assert all(i["decoded"] for i in layout["images"]), layout["images"]

    page_file = tmp_path / "report.html"
    page_file.write_text(html, encoding="utf-8")
    shot = tmp_path / "shot.png"
    chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars",
             page_file.as_uri())
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (1600, 1200)
    ink = (np.abs(pixels - pixels[0, 0]).sum(axis=2) > 60).mean()  # differs from the page background
    assert ink > 0.02
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 20  # text, rules and figure colours
