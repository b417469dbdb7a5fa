"""Tables of one A/B run (run.sh) from this folder; medians of the repeats."""
import glob, json, os, statistics, sys
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__) or "."
print("| gc.compile + first f(...) (fresh process, empty cache) | before (671bd5b) | after |")
print("|---|---|---|")
for model in ("tutorial", "3-32-1"):
    cells = []
    for side in ("old", "new"):
        rows = [json.load(open(f)) for f in sorted(glob.glob(f"{OUT}/compile-{side}-{model}-*.json"))]
        cells.append(f"{statistics.median(r['compile+call'] for r in rows):.3f} s ({rows[0]['schedule']})")
    print(f"| {model} | {cells[0]} | {cells[1]} |")
print()
print("| softmax classifier, gc.compile + f(...) (fresh process) | before | after |")
print("|---|---|---|")
for k, h in ((3, 0), (10, 0), (3, 64), (10, 64)):
    cells = []
    for side in ("old", "new"):
        r = json.load(open(f"{OUT}/classes-{side}-{k}-{h}.json"))
        if "timeout_s" in r:
            cells.append(f"did not finish in {r['timeout_s']} s")
        else:
            cells.append(f"{r['total_s']:.2f} s ({r['schedule']}; longest line {r['longest_line']:,} chars, "
                         f"codegen {r['stages'].get('codegen', 0):.2f} s, Numba {r['stages'].get('numba', 0):.2f} s)")
    model = f"2-{k} linear" if not h else f"2-{h}-{k} relu"
    print(f"| {model}, {k} classes | {cells[0]} | {cells[1]} |")
print()
print("| least squares, first fit in a fresh process (bench_lsq compile) | before | after |")
print("|---|---|---|")
lsq = {side: json.load(open(f"{OUT}/lsq-{side}.json"))["compile"] for side in ("old", "new")}
for key in lsq["new"]:
    cell = lambda r: (f"{r['first_fit_s']:.2f} s (Numba {r['stages'].get('numba', 0):.2f} s)"
                      if r and "first_fit_s" in r else "-")
    print(f"| {key} | {cell(lsq['old'].get(key))} | {cell(lsq['new'].get(key))} |")
print()
print("| tutorial (graphc bench --quick): step time / hand-written njit | before | after |")
print("|---|---|---|")
for name in ("graphc cpu", "graphc parallel"):
    cells = []
    for side in ("old", "new"):
        rows = {r["competitor"]: r for r in json.load(open(f"{OUT}/bench-{side}.json"))["results"]}
        cells.append(f"{rows[name]['step_s'] / rows['njit (hand-written)']['step_s']:.2f}x")
    print(f"| {name} | {cells[0]} | {cells[1]} |")
