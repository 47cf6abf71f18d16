"""Real-browser test of the app: start ``streamlit run app/Home.py``, drive headless Chromium through a steering
comparison (build a vector from contrast prompts, generate unsteered vs steered), visit Inspect and Export, and save
screenshots plus a step log under ``bench/results/ui/``.

Needs Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright`` Python package (no browser
download: we pass ``executable_path``).

    .venv/bin/python bench/ui_browser.py [--model smollm2-135m-instruct] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from steering import gguf_control
from workbench import atomic

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "ui"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not become healthy at {url} within {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="WORKBENCH_APP_MODEL for the app")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each step")
    parser.add_argument("--height", type=int, default=2000, help="browser viewport height (screenshots)")
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS for the app (1 is stable on a shared CPU)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WORKBENCH_APP_MODEL": args.model, "OMP_NUM_THREADS": args.threads}
    log_path = REPO / "bench" / "scratch" / "ui_streamlit.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "Home.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    steps: list[dict] = []
    downloaded: dict = {}
    ms = int(args.timeout * 1000)

    def step(name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        steps.append({"step": name, "seconds": round(time.perf_counter() - start, 2)})

    ok = False
    try:
        wait_healthy(url, server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])
            # Streamlit scrolls inside its own container, so a tall viewport is what captures the whole page.
            page = browser.new_page(viewport={"width": 1400, "height": args.height})

            def home() -> None:
                page.goto(url)
                page.get_by_text("Artifacts are looked up under").wait_for(timeout=ms)  # the script has finished
                idle()
                page.screenshot(path=str(OUT / "1_home.png"), full_page=True)

            def idle() -> None:
                """Wait until Streamlit's "running" indicator is gone, then let charts paint."""
                page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=ms)
                page.wait_for_timeout(1000)

            def open_page(label: str, marker: str) -> None:
                page.get_by_role("link", name=label).first.click()
                page.get_by_text(marker).first.wait_for(timeout=ms)

            def steering() -> None:
                open_page("Steering", "Positive prompts (one per line)")
                page.get_by_role("button", name="Build vector").click()
                page.get_by_text("Built a vector at").wait_for(timeout=ms)
                box = page.get_by_label("Prompts (one per line)", exact=True)
                box.fill("Tell me about your weekend.\nWhat do you think of Mondays?")
                box.press("Control+Enter")
                page.wait_for_timeout(500)
                page.get_by_role("button", name="Generate").click()
                page.get_by_text("steered ×4").last.wait_for(timeout=ms)
                idle()
                page.screenshot(path=str(OUT / "2_steering_comparison.png"), full_page=True)

            def inspect() -> None:
                open_page("Inspect", "Logit lens")
                page.locator(".js-plotly-plot").first.wait_for(timeout=ms)
                idle()
                page.screenshot(path=str(OUT / "3_inspect.png"), full_page=True)

            def export() -> None:
                open_page("Export", "Manifest")
                button = page.get_by_role("button", name="llama.cpp control vector (.gguf)")
                button.wait_for(timeout=ms)
                idle()
                page.screenshot(path=str(OUT / "4_export.png"), full_page=True)
                with page.expect_download(timeout=ms) as info:  # the downloaded file must be a valid control vector
                    button.click()
                cv = gguf_control.read(info.value.path())
                downloaded.update({"gguf_layers": sorted(cv.directions), "n_embd": cv.n_embd,
                                   "model": cv.metadata.get("model", {}).get("name")})

            for name, fn in (("home", home), ("steering comparison", steering), ("inspect", inspect),
                             ("export", export)):
                step(name, fn)
            browser.close()
        ok = True
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        atomic.write_json(OUT / "ui_browser.json", {"ok": ok, "model": args.model, "chromium": args.chromium,
                                                     "omp_num_threads": args.threads,
                                                     "steps": steps, "downloaded_gguf": downloaded,
                                                     "screenshots": sorted(p.name for p in OUT.glob("*.png"))})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
