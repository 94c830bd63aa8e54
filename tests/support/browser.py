"""Headless Chromium for the dashboard tests: Debian's ``chromium`` and ``chromedriver``,
installed with apt-get when missing (CI runs on fresh machines of this kind, as root).

    reason = ensure_chromium()          # None when ready, else why it is not
    driver = chrome(tmp_path / "profile")
    ...
    screenshot(driver, ARTIFACTS / "dashboard-index.png")
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ["chromium", "chromium-driver"]
INSTALL_TIMEOUT_S = 900
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--password-store=basic", "--lang=en-US"]
_install_lock = threading.Lock()
T = TypeVar("T")


def _ready() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def ensure_chromium() -> str | None:
    """Install chromium + chromium-driver with apt-get if either is missing.

    Returns None when both are there, else a reason to skip (no apt-get, not root, the
    install failed) with the tail of apt's output.
    """
    with _install_lock:
        if _ready():
            return None
        if shutil.which("apt-get") is None:
            return "chromium/chromedriver missing and apt-get is not available"
        if os.geteuid() != 0:
            return "chromium/chromedriver missing and not root: apt-get install " + " ".join(PACKAGES)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update"],
                     ["apt-get", "install", "-y", *PACKAGES]):
            try:
                done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                      timeout=INSTALL_TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"{' '.join(argv)} failed: {exc}"
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
                return f"{' '.join(argv)} exited {done.returncode}:\n" + "\n".join(tail)
        return None if _ready() else "apt-get installed the packages but the binaries are missing"


def chrome(user_data_dir: Path, *, width: int = 1400, height: int = 1000) -> Any:
    """A headless Chrome WebDriver on a fresh profile (no network beyond what pages load)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    user_data_dir.mkdir(parents=True, exist_ok=True)
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


def wait_until(fn: Callable[[], T], timeout_s: float = 10.0, every_s: float = 0.1,
               message: str = "condition") -> T:
    """Call ``fn`` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - stale elements, not yet there...
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} not met within {timeout_s}s (last: {last!r})")
        time.sleep(every_s)


IMAGES_JS = """
return Array.from(document.querySelectorAll(arguments[0])).map(function (img) {
  return {src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth,
          height: img.naturalHeight};
});
"""


def images(driver: Any, css: str = "img") -> list[dict[str, Any]]:
    """Every image matching ``css``: src, complete, naturalWidth/Height."""
    return driver.execute_script(IMAGES_JS, css)


def images_rendered(driver: Any, css: str = "img", timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Scroll each image into view (lazy loading) and wait until all have decoded pixels."""
    driver.execute_script(
        "document.querySelectorAll(arguments[0]).forEach(function (i) { i.loading = 'eager'; });",
        css)

    def done() -> list[dict[str, Any]] | None:
        found = images(driver, css)
        return found if found and all(i["complete"] and i["width"] > 0 for i in found) else None

    return wait_until(done, timeout_s, message=f"images {css} rendered")


def screenshot(driver: Any, path: Path, *, full_page: bool = True, max_height: int = 6000) -> Path:
    """Save a PNG of the page (the whole page height when ``full_page``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if full_page:
        size = driver.get_window_size()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], min(max(int(height) + 140, 600), max_height))
        try:
            driver.save_screenshot(str(path))
        finally:
            driver.set_window_size(size["width"], size["height"])
    else:
        driver.save_screenshot(str(path))
    return path
