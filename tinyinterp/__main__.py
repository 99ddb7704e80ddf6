"""Command line: ``python -m tinyinterp {train,evaluate,visualize,gradcheck}``."""
import argparse
import sys


def cmd_gradcheck(args):
    from .gradcheck import TOLERANCE
    from .gradcheck_suite import all_cases, format_table

    rows = all_cases(seed=args.seed)
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks below max relative error {TOLERANCE:g} "
          f"(central differences, float64)")
    return 1 if failed else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyinterp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gradcheck", help="check every backward against finite differences")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_gradcheck)
    from .metrics import add_evaluate_parser
    from .train import add_train_parser
    from .visualize import add_visualize_parser
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_visualize_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
