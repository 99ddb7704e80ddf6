"""Command line: python -m tinyinterp {train,evaluate,visualize,gradcheck,download-cub}."""
import sys

from .cli import HelpFormatter, Parser, add_parser, nonnegative_int, run_command

DESCRIPTION = ("Interpretable CNNs (Zhang, Wu, Zhu, CVPR 2018) in NumPy/CuPy: train small VGGs "
               "with and without the paper's filter loss, measure and draw their filters. "
               "'python -m tinyinterp COMMAND --help' shows a command's options and defaults.")


def cmd_gradcheck(args):
    from .gradcheck import TOLERANCE
    from .gradcheck_suite import all_cases, format_table

    rows = all_cases(seed=args.seed)
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks below max relative error {TOLERANCE:g} "
          f"(central differences, float64)")
    return 1 if failed else 0


def build_parser():
    parser = Parser(prog="python -m tinyinterp", description=DESCRIPTION, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .data.download import add_download_parser
    from .evaluate import add_evaluate_parser
    from .train_cli import add_train_parser
    from .visualize import add_visualize_parser
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_visualize_parser(sub)
    g = add_parser(sub, "gradcheck", help="check every backward against finite differences")
    g.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random inputs")
    g.set_defaults(func=cmd_gradcheck)
    add_download_parser(sub)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true",
                       help="show the traceback of an error instead of its one line "
                            "(or set TINYINTERP_DEBUG=1)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what train's Ctrl-C message repeats to resume
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
