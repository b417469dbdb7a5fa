"""Tables of one A/B run (run.sh) from this folder: first compile, the tutorial bench (three pairs),
bench_mlp; medians."""
import glob, json, statistics, sys
OUT = sys.argv[1] if len(sys.argv) > 1 else __import__("os").path.dirname(__file__) or "."
print("| model (fresh process, empty cache) | before: compile+call, first fit | after: compile+call, first fit |")
print("|---|---|---|")
for model in ("tutorial", "3-32-1", "3-64-1", "3-256-256-1"):
    cells = []
    for side in ("old", "new"):
        rows = [json.load(open(f)) for f in sorted(glob.glob(f"{OUT}/compile-{side}-{model}-*.json"))]
        cells.append(f"{statistics.median(r['compile+call'] for r in rows):.2f} s, "
                     f"{statistics.median(r['first fit'] for r in rows):.2f} s ({rows[0]['schedule']})")
    print(f"| {model} | {cells[0]} | {cells[1]} |")
print()
print("| tutorial (graphc bench --quick), step time / hand-written njit | before | after |")
print("|---|---|---|")
for name in ("graphc cpu", "graphc parallel"):
    cells = []
    for side in ("old", "new"):
        ratios = []
        for f in sorted(glob.glob(f"{OUT}/bench-{side}*.json")):
            rows = {r["competitor"]: r for r in json.load(open(f))["results"]}
            ratios.append(rows[name]["step_s"] / rows["njit (hand-written)"]["step_s"])
        cells.append(f"{statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"| {name} | {cells[0]} | {cells[1]} |")
print()
print("| MLP | n | dtype | before: graphc ms/step (x numpy) | after: graphc ms/step (x numpy) |")
print("|---|---|---|---|---|")
rows = {}
for side in ("old", "new"):
    for r in json.load(open(f"{OUT}/mlp-{side}.json")):
        rows.setdefault(("-".join(map(str, r["widths"])), r["n"], r["dtype"]), {})[side] = r
for (w, n, dt), sides in rows.items():
    cell = lambda r: f"{r['graphc'] * 1e3:.3f} ({r['numpy'] / r['graphc']:.1f}x)"
    print(f"| {w} | {n} | {dt} | {cell(sides['old'])} | {cell(sides['new'])} |")
