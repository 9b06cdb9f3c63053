"""scrapy, the largest Twisted user, crawling a local site on the instrumented reactor.

scrapy installs the reactor its ``TWISTED_REACTOR`` setting names (asyncio's
by default) and refuses to run unless ``type(reactor) ==`` that class: under
``threadcheck run`` and ``pytest --threadcheck`` it gets the instrumented
version and accepts it. A pipeline that stores items in a worker thread is
clean when the worker hands its stats update to the reactor with
``callFromThread``, and reported when it calls ``reactor.callLater`` instead.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from threadcheck._cli import VIOLATIONS_FOUND
from threadcheck_reactor import KINDS

from support import TWISTED_CLASSES

pytestmark = pytest.mark.slow

SITE = {"/": ("home", ["/a", "/b"]), "/a": ("A", ["/b"]), "/b": ("B", [])}
"""Path: (title, links). /b is linked twice: scrapy's duplicate filter drops one."""

CRAWLED = sorted((path, title) for path, (title, _) in SITE.items())


class _SiteHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        page = SITE.get(self.path)
        if page is None:
            self.send_error(404)
            return
        title, links = page
        body = f"<h1>{title}</h1>" + "".join(f'<a href="{link}">{link}</a>' for link in links)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass  # the crawl's output is what the tests read


@pytest.fixture
def site() -> Iterator[str]:
    """The site's base URL, served from a thread of the test process."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SiteHandler)
    thread = threading.Thread(target=server.serve_forever, name="site")
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()
    server.server_close()


# Imported by both the CrawlerProcess script and the pytest project. It
# imports the reactor only inside functions, as scrapy requires: the crawl
# installs the reactor its TWISTED_REACTOR setting names.
SPIDER_MODULE = """
import scrapy
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet import threads

STORED = []


class Pages(scrapy.Spider):
    name = "pages"

    def __init__(self, base, **kwargs):
        super().__init__(**kwargs)
        self.base = base
        self.start_urls = [base + "/"]

    def parse(self, response):
        yield {"path": response.url[len(self.base):], "title": response.css("h1::text").get()}
        yield from response.follow_all(css="a", callback=self.parse)


class Store:
    \"\"\"Stores each item in a worker thread, as a blocking database client would.\"\"\"

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_item(self, item, spider=None):  # older scrapy passes the spider
        return await maybe_deferred_to_future(threads.deferToThread(self.store, item))

    def store(self, item):
        from twisted.internet import reactor

        STORED.append((item["path"], item["title"]))
        reactor.callFromThread(self.crawler.stats.inc_value, "stored")
        return item


class StoreWithCallLater(Store):
    def store(self, item):
        from twisted.internet import reactor

        STORED.append((item["path"], item["title"]))
        reactor.callLater(0, self.crawler.stats.inc_value, "stored")  # BUG: in a worker
        return item


def settings(pipeline):
    # scrapy's default TWISTED_REACTOR (asyncio's) is left alone on purpose.
    return {
        "ITEM_PIPELINES": {pipeline: 100},
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
    }
"""

CRAWLER_PROCESS = """
import sys

from scrapy.crawler import CrawlerProcess

import site_spider

base, pipeline = sys.argv[1:]
process = CrawlerProcess(site_spider.settings(getattr(site_spider, pipeline)))
crawler = process.create_crawler(site_spider.Pages)
process.crawl(crawler, base=base)
process.start()
print("stored:", sorted(site_spider.STORED))
print("counted:", crawler.stats.get_value("stored"))
"""


def threadcheck_run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadcheck", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )


def crawl_under_threadcheck_run(
    tmp_path: Path, base: str, pipeline: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "site_spider.py").write_text(SPIDER_MODULE)
    (tmp_path / "crawl.py").write_text(CRAWLER_PROCESS)
    return threadcheck_run(tmp_path, "crawl.py", base, pipeline)


def test_crawler_process_under_threadcheck_run(tmp_path: Path, site: str) -> None:
    result = crawl_under_threadcheck_run(tmp_path, site, "Store")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"stored: {CRAWLED}", f"counted: {len(CRAWLED)}"]
    assert result.stderr.splitlines()[-1] == "threadcheck: no thread-affinity violations found"


def test_crawler_process_pipeline_calling_call_later_in_a_worker(
    tmp_path: Path, site: str
) -> None:
    result = crawl_under_threadcheck_run(tmp_path, site, "StoreWithCallLater")
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert f"  reactor.callLater: {len(CRAWLED)}" in result.stderr
    assert 'reactor.callLater(0, self.crawler.stats.inc_value, "stored")' in result.stderr
    assert "RuntimeError" not in result.stderr  # scrapy accepted the reactor


INSTALL_REACTOR = """
import sys

from scrapy.utils.reactor import (
    install_reactor,
    is_asyncio_reactor_installed,
    verify_installed_reactor,
)

install_reactor(sys.argv[1])
verify_installed_reactor(sys.argv[1])  # RuntimeError unless type(reactor) == that class
print(is_asyncio_reactor_installed())
"""


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "default"])
def test_scrapys_install_reactor_gets_the_instrumented_reactor(tmp_path: Path, kind: str) -> None:
    (tmp_path / "install.py").write_text(INSTALL_REACTOR)
    result = threadcheck_run(tmp_path, "install.py", TWISTED_CLASSES[kind])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{kind == 'asyncio'}\n"


PYTEST_PROJECT = """
import os

import pytest
import pytest_twisted
from scrapy.crawler import CrawlerRunner

import site_spider


@pytest.fixture(autouse=True)
def nothing_stored():
    site_spider.STORED.clear()


def crawl(pipeline):
    runner = CrawlerRunner(site_spider.settings(pipeline))
    return runner.crawl(site_spider.Pages, base=os.environ["SITE_URL"])


@pytest_twisted.inlineCallbacks
def test_store():
    yield crawl(site_spider.Store)
    assert sorted(site_spider.STORED) == {crawled!r}


@pytest_twisted.inlineCallbacks
def test_store_with_call_later():
    yield crawl(site_spider.StoreWithCallLater)
"""


def test_crawler_runner_under_pytest_threadcheck(
    pytester: pytest.Pytester, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITE_URL", site)
    pytester.makepyfile(
        site_spider=SPIDER_MODULE,
        test_crawl=PYTEST_PROJECT.format(crawled=CRAWLED),
    )
    # pytest-twisted's --reactor=asyncio, as scrapy runs its own tests.
    result = pytester.runpytest_subprocess("--threadcheck", "--reactor=asyncio", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "during test: test_crawl.py::test_store_with_call_later" in out
    assert "RuntimeError" not in out
    result.stdout.fnmatch_lines(
        [
            f"threadcheck: {len(CRAWLED)} thread-affinity violations in 1 test",
            f"  by API: reactor.callLater: {len(CRAWLED)}",
        ]
    )
