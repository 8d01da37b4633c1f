"""How far the chapters' numbers move between numerical paths, and whether any verdict does.

Executes every chapter (or the ones named) under several numerical paths of this machine —
PyTorch's default kernels, the second path of ``make test-second-path`` (kernels held below the
CPU's instruction set), one thread, a lower instruction set still — and compares each run with
the committed outputs by the rules of ``tests/chapter_outputs.py``. For every path it prints

- whether the chapter passes (numbers within noise, words exactly),
- its largest *margin*: the largest |moved| / tolerance over the numbers that moved (1 = at
  the edge of the tolerance),
- every glued 95 % interval whose verdict differs between paths, and the *fragile* ones: an
  interval whose bound nearest zero, in any path, is within one point of zero and moved,

and writes the summary under ``"numerical_paths"`` in ``benchmarks/results.json``.

Usage::

    python benchmarks/numerical_paths.py                       # every chapter, every path (about 40 min)
    python benchmarks/numerical_paths.py book/04_clip.ipynb --paths default second
    python benchmarks/numerical_paths.py --reuse _build/paths   # compare runs made before, execute nothing
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import chapter_outputs as co  # noqa: E402
from notebooks import ENV  # noqa: E402  (the offline, quiet settings every chapter runs with)
from results import update_results  # noqa: E402

OUT = ROOT / "_build" / "paths"
INTERVAL = re.compile(r"CI ([+\-]?\d+(?:\.\d+)?) to ([+\-]?\d+(?:\.\d+)?)")


def path_envs() -> dict[str, dict[str, str]]:
    """The numerical paths this machine offers, by name."""
    paths = {"default": {}, "second": co.second_path_env(), "one-thread": {"LFD13_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}}
    if paths["second"].get("ONEDNN_MAX_CPU_ISA") == "AVX2":  # an AVX-512 CPU offers a third: SSE4.1
        paths["sse41"] = {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default"}
    return paths


def execute(chapter: Path, env: dict[str, str], out: Path) -> float:
    """Execute ``chapter`` in a child process under ``env``; write it to ``out``; return seconds."""
    code = ("import sys, nbformat; from pathlib import Path; sys.path.insert(0, 'tests'); import chapter_outputs as co; "
            "p = Path(sys.argv[1]); nb = co.execute(nbformat.read(p, as_version=4), cwd=p.parent); "
            "out = Path(sys.argv[2]); out.parent.mkdir(parents=True, exist_ok=True); nbformat.write(nb, out)")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(chapter), str(out)], cwd=ROOT, check=True,
                   env={**os.environ, **ENV, **env})
    return time.perf_counter() - start


def margins(committed: dict, executed: dict, chapter: str) -> float:
    """The largest |moved| / tolerance over the numbers that moved (0 when none did)."""
    bare, exceptions = co.glue_rules(committed), co.page_exceptions(committed, chapter)
    a = [c for c in committed["cells"] if c["cell_type"] == "code"]
    b = [c for c in executed["cells"] if c["cell_type"] == "code"]
    worst = 0.0
    for x, y in zip(a, b):
        for (label, tx), (_, ty) in zip(co.comparable(x), co.comparable(y)):
            tx, ty = co.sanitise(tx), co.sanitise(ty)
            if tx == ty or co.skeleton(tx) != co.skeleton(ty):
                continue  # identical, or words that differ (compare_notebooks reports those)
            name = label[len("glue "):] if label.startswith("glue ") else None
            for moved in co.moved_numbers(tx, ty, label=label, exceptions=exceptions, bare=bare.get(name)):
                if moved.tolerance is not None:
                    gap = abs(moved.executed.value - moved.committed.value)
                    worst = max(worst, gap / moved.tolerance if moved.tolerance else float("inf"))
    return worst


def intervals(nb: dict) -> dict[str, tuple[float, float]]:
    """Every glued 95 % interval: "glue name #k" -> (low, high)."""
    found = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            text = out.get("data", {}).get("application/papermill.record/text/plain")
            if name and text:
                text = text if isinstance(text, str) else "".join(text)
                for k, m in enumerate(INTERVAL.finditer(text)):
                    found[f"{name} #{k}"] = (float(m.group(1)), float(m.group(2)))
    return found


def verdict(low: float, high: float) -> str:
    return "above" if low > 0 else "below" if high < 0 else "level with"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters (default: every book/[0-9]*.ipynb)")
    parser.add_argument("--paths", nargs="*", help=f"paths to run (default: all of {list(path_envs())})")
    parser.add_argument("--reuse", type=Path, help="compare the runs in DIR/<path>/<chapter>.ipynb; execute nothing")
    parser.add_argument("--no-save", action="store_true", help="print only, do not touch results.json")
    args = parser.parse_args(argv)

    envs = path_envs()
    names = args.paths or list(envs)
    unknown = [n for n in names if n not in envs]
    if unknown:
        parser.error(f"unknown path {unknown}: this machine offers {list(envs)}")
    chapters = [p.resolve() for p in args.chapters] or sorted((ROOT / "book").glob("[0-9]*.ipynb"))
    base = args.reuse or OUT
    summary: dict[str, dict] = {"paths": {n: envs[n] for n in names}, "chapters": {}, "verdicts_moved": [], "fragile": []}
    for chapter in chapters:
        committed = json.loads(chapter.read_text())
        runs = {"committed": committed}
        row: dict[str, dict] = {}
        for name in names:
            out = base / name / chapter.name
            seconds = None
            if not args.reuse:
                seconds = round(execute(chapter, envs[name], out), 1)
            if not out.exists():
                continue
            runs[name] = json.loads(out.read_text())
            diffs = co.compare_notebooks(committed, runs[name], chapter=chapter.stem)
            row[name] = {"passes": not diffs, "differences": len(diffs), "largest_margin": round(margins(committed, runs[name], chapter.stem), 2),
                         "seconds": seconds}
            print(f"{chapter.stem:22} {name:11} {'passes' if not diffs else f'{len(diffs)} differences'}  "
                  f"largest margin {row[name]['largest_margin']:.2f}" + (f"  {seconds:.0f} s" if seconds else ""), flush=True)
            for d in diffs[:5]:
                print(f"    {d}")
        summary["chapters"][chapter.stem] = row
        by_run = {run: intervals(nb) for run, nb in runs.items()}
        for key in by_run["committed"]:
            seen = {run: ivs[key] for run, ivs in by_run.items() if key in ivs}
            verdicts = {run: verdict(*iv) for run, iv in seen.items()}
            near = min(min(abs(lo), abs(hi)) for lo, hi in seen.values())
            entry = {"chapter": chapter.stem, "interval": key, "by_path": {r: list(iv) for r, iv in seen.items()}}
            if len(set(verdicts.values())) > 1:
                summary["verdicts_moved"].append(entry)
                print(f"    VERDICT MOVED {key}: {verdicts}")
            elif near < 1.0 and len(set(seen.values())) > 1:
                summary["fragile"].append(entry)
                print(f"    fragile {key}: {seen}")
    print(f"verdicts that moved between paths: {len(summary['verdicts_moved'])}; "
          f"fragile (a bound within a point of zero that moved): {len(summary['fragile'])}")
    if not args.no_save:
        update_results("numerical_paths", summary)
    failed = any(not r["passes"] for row in summary["chapters"].values() for r in row.values())
    return 1 if failed or summary["verdicts_moved"] else 0


if __name__ == "__main__":
    sys.exit(main())
