"""`qwen-min sweep`: the learning rate x batch size sweep over tiny sizes, and the power laws fitted to it (chapter 8b).

    qwen-min sweep --out runs/sweep                  # every grid point not done yet, then the fit and its verification
    qwen-min sweep --list                            # the grid: index, size, lr, batch
    qwen-min sweep --out runs/me --point 17          # one point (in a class: student K runs point K)
    qwen-min sweep --merge runs/alice runs/bob --out runs/class   # collect the points, then fit and verify

A lab: hand out point indices 0-99 (`--list`), each student runs `qwen-min sweep --point K --out runs/me` (1-25 s)
and hands in runs/me/points/; the teacher merges the folders and runs the fit, which trains the three
verification runs of the held-out size itself.
"""

from __future__ import annotations

from qwen_min.scaling import laws, sweep


def add_arguments(p):
    p.add_argument("--out", help="sweep folder: points/<name>/ per grid point, tokenizer/, data/, fit.json")
    p.add_argument("--point", type=int, help="run only grid point K (see --list)")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="sweep folders whose points to collect into --out")
    p.add_argument("--list", action="store_true", help="print the grid and exit")
    p.add_argument("--no-verify", action="store_true", help="fit only: skip the held-out size's verification runs")


def run(args):
    if args.list:
        for q in sweep.points():
            print(f"{q.index:3d}  {q.name:22s} size {q.size}  lr {q.lr:<7g} batch {q.batch} x {sweep.SEQ_LEN} tokens")
        return 0
    if not args.out:
        raise ValueError("--out is required (the sweep folder), except with --list")
    if args.point is not None and args.merge:
        raise ValueError("--point runs one point and --merge collects points: give one of them")
    if args.point is not None:
        q = sweep.point(args.point)
        result = sweep.run_point(q, args.out, progress=True)
        print(f"point {q.index} ({q.name}): val loss {result['val_loss']:.4f} in {result['seconds']:.1f} s "
              f"-> {args.out}/points/{q.name}/{sweep.RESULT}")
        return 0
    if args.merge:
        sweep.merge(args.merge, args.out)
    else:
        sweep.run_sweep(args.out)
    summary = laws.fit_and_verify(args.out, verify=not args.no_verify)
    print(laws.summary_markdown(summary))
    return 0
