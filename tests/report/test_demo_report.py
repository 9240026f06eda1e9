"""The issue's "done when", as a person would check it: run ``llmchain demo``, then
``llmchain report llmchain-demo.log``, open the page in a real browser (headless Chromium, offline)
and look: every chart drawn, no script error, and the demo's retries, 429 pauses, cache hits,
repairs and failures where a person would look for them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmchain import demo
from llmchain.demo._report import summarize
from llmchain.report import figures, read_logs, render_text
from llmchain.report._html import CHART_IDS

SECRET = "LLMCHAIN-DEMO-SECRET-0b7e4d21"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-default-apps", "--virtual-time-budget=15000")


def chromium() -> str:
    """Debian's chromium; in CI (CI=true) its absence fails loudly, locally it skips."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.path.exists("/usr/bin/chromium"):
        found = "/usr/bin/chromium"
    if found is None:
        message = ("headless Chromium is needed to check the report renders: apt-get install chromium "
                   "(.ci/run installs it)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``python -m llmchain demo`` in a fresh directory: (that directory, what it printed)."""
    cwd = tmp_path_factory.mktemp("demo-run")
    env = {**os.environ, demo.DEMO_KEY_ENV: SECRET}
    done = subprocess.run([sys.executable, "-m", "llmchain", "demo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return cwd, done.stdout


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoResult:
    """An in-process run too: its summary is what the report must agree with."""
    log = tmp_path_factory.mktemp("demo") / "llmchain-demo.log"
    return demo.run_demo(log_path=log)


def test_the_demo_ends_by_saying_how_to_open_its_report(run: tuple[Path, str]) -> None:
    _, stdout = run
    tail = stdout.rstrip().splitlines()[-3:]
    assert tail[0] == "See this run as charts: llmchain report llmchain-demo.log -o llmchain-demo-report.html"
    assert "open llmchain-demo-report.html in a browser" in tail[1] and "llmchain[report]" in tail[1]
    assert tail[2].endswith("llmchain report llmchain-demo.log --text")


def test_the_report_counts_what_the_demo_did(result: demo.DemoResult) -> None:
    s = summarize(result)
    data = read_logs([str(result.log_path)])
    f = figures(data)
    failed = [r for r in result.rows if r.error is not None]
    assert data.calls == s["requests"] and f["errors"] == len(failed) and data.stats.foreign_lines == 0
    assert (f["attempts"], f["retries"], f["http_429"], f["timeouts"]) == (
        s["attempts"], s["retries"], s["http_429"], s["attempts_timed_out"])
    assert (f["pauses"], f["limiter_waits"]) == (s["provider_pauses"], s["limiter_waits"])
    assert (f["cache_hits"], f["coalesced"]) == (s["cache_hits"], s["coalesced"])
    assert (f["repairs_local"], f["repairs_reask"], f["repairs_gave_up"]) == (
        s["repaired_local"], s["reasks"], s["repair_gave_up"])
    assert data.calls_without_debug == 0 and data.unfinished == 0
    # every failed request is a sample of its kind, and its story lists the attempts the caller saw
    samples = {sample.request_id: sample for kind in data.samples.values() for sample in kind}
    for row in failed:
        assert row.error is not None
        story = "\n".join(samples[row.request_id].story)
        assert story.startswith(f"{type(row.error).__name__}: ")
        assert story.count(" sent via ") == len(row.attempts), story


def test_text_summary_shows_the_incident_figures(result: demo.DemoResult) -> None:
    text = render_text(read_logs([str(result.log_path)]))
    s = summarize(result)
    assert f"{s['requests']} calls:" in text and f"({s['retries']} retries)" in text
    assert f"{s['http_429']} 429" in text and f"{s['provider_pauses']} provider pauses" in text
    assert f"cache hits {s['cache_hits']} of" in text and f"repairs {s['repaired_local']} local" in text
    assert "Top error kinds:" in text and "GaveUp ← RateLimited · HTTP 429" in text
    assert "rebuilt from the log:" in text and "only what the log holds" in text


def test_the_report_opens_offline_in_chromium_with_every_chart_drawn(run: tuple[Path, str]) -> None:
    pytest.importorskip("plotly", reason="the dev extra installs plotly (llmchain[report])")
    browser = chromium()
    cwd, _ = run
    report = subprocess.run([sys.executable, "-m", "llmchain", "report", "llmchain-demo.log"], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    page = cwd / "llmchain-report.html"
    html = page.read_text(encoding="utf-8")
    # self-contained: no script or style is fetched; the demo's API key is nowhere
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", html, re.I)
    assert SECRET not in html and html.count("plotly.js v") == 1

    profile = cwd / "chromium-profile"
    shown = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                            page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = shown.stdout
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None, shown.stderr[-2000:]
    attributes = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', root.group(0)))
    assert attributes["data-errors"] == "", attributes["data-errors"]
    assert attributes["data-charts-expected"] == str(len(CHART_IDS))
    assert attributes["data-charts-drawn"] == str(len(CHART_IDS)), "some charts did not draw"
    for chart in CHART_IDS:  # plotly drew an SVG into each chart's element
        element = re.search(rf'<div[^>]*\bid="{chart}"[^>]*>', dom)
        assert element is not None and "js-plotly-plot" in element.group(0), chart
    # where a person looks: the headline cards, the error kinds with a story, the tables
    cards = dict(re.findall(r'<div class="card[^"]*"><b>([^<]*)</b><span>([^<]*)</span>', dom))
    by_label = {label: value for value, label in cards.items()}
    assert by_label["429s"] == "4" and by_label["429 pauses"].startswith("4 (")
    assert by_label["cache hits"].startswith("5 (") and by_label["failed"] == "6"
    assert by_label["repairs local / re-ask"] == "2 / 2" and int(by_label["retries"]) >= 12
    assert "GaveUp ← RateLimited · HTTP 429" in dom and "what happened (" in dom
    assert '<div id="slowest"><table>' in dom and '<div id="costliest"><table>' in dom


def test_the_benchmark_log_is_in_the_real_format(result: demo.DemoResult, tmp_path: Path) -> None:
    """benchmarks/bench_report.py's synthetic lines carry the fields the log stage writes, no others."""
    import json

    from benchmarks.bench_report import generate

    real: dict[str, set[str]] = {}
    for line in result.log_path.read_text().splitlines():
        record = json.loads(line)
        real.setdefault(record["event"], set()).update(record)
    fake = tmp_path / "fake.log"
    generate(fake, 3000)
    seen: set[str] = set()
    for line in fake.read_text().splitlines():
        if not line.startswith("{"):
            continue  # the other loggers' lines mixed in on purpose
        record = json.loads(line)
        seen.add(record["event"])
        assert set(record) <= real[record["event"]], (record["event"], set(record) - real[record["event"]])
    assert {"llm.call", "llm.attempt_start", "llm.attempt_end", "llm.retry_scheduled", "llm.rate_limit_wait",
            "llm.cache_hit", "llm.cache_miss", "llm.repair"} <= seen
