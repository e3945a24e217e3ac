"""The inspect report of 100k pairs: how long `inspect` takes, how large the page is, and how long
headless Chromium needs until the pair browser is interactive (`window.prefsmithReady`).

    .venv/bin/python benchmarks/inspect_100k.py [--pairs 100000] [--out /tmp/inspect100k]

Needs Debian's chromium and chromium-driver (`make test` installs them). Prints one Markdown
table; benchmarks/results/inspect_100k.md records a run.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from prefsmith.inspection.inspect import inspect_pairs
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PAIRS

WORDS = "the a dog cat runs fast slow answer good bad question because".split()


def synthetic_pairs(n: int, root: Path, *, seed: int = 0) -> Path:
    """n pairs with realistic text lengths (chosen 20–200 words, rejected 5–300)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)
    rows = []
    for i in range(n):
        chosen = " ".join(vocab[rng.integers(0, len(vocab), rng.integers(20, 200))])
        rejected = " ".join(vocab[rng.integers(0, len(vocab), rng.integers(5, 300))])
        s_rej = float(rng.normal(0.1, 0.03))
        s_cho = s_rej + abs(float(rng.normal(0.0, 0.02)))
        rows.append(
            {
                "pair_id": f"pair{i:06d}",
                "prompt_id": f"prompt{i:06d}",
                "messages": [{"role": "user", "content": f"question {i}: " + chosen[:60]}],
                "chosen": chosen,
                "rejected": rejected,
                "chosen_response_id": f"r{i}-0",
                "rejected_response_id": f"r{i}-1",
                "score_chosen": s_cho,
                "score_rejected": s_rej,
                "margin": s_cho - s_rej,
                "strategy": "best_vs_worst",
                "scorer": "synthetic",
            }
        )
    return write_table(rows, root / "pairs.parquet", PAIRS)


def time_to_interactive(page: Path) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get("about:blank")
        start = time.perf_counter()
        driver.get(page.as_uri())
        WebDriverWait(driver, 300).until(
            lambda d: d.execute_script("return !!window.prefsmithReady")
        )
        return time.perf_counter() - start
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/inspect100k"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = synthetic_pairs(args.pairs, args.out)
    start = time.perf_counter()
    result = inspect_pairs(pairs, out_html=args.out / "report.html")
    inspect_s = time.perf_counter() - start
    size_mb = result.html_path.stat().st_size / 1e6
    tti = time_to_interactive(result.html_path)
    print("| pairs | inspect (s) | page (MB) | time to interactive (s) |")
    print("|---|---|---|---|")
    print(f"| {args.pairs:,} | {inspect_s:.1f} | {size_mb:.1f} | {tti:.2f} |")


if __name__ == "__main__":
    main()
