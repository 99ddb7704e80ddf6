"""Running ``python -m tinyinterp ...`` in the test's process, and what its errors must look like."""
from tinyinterp.__main__ import main


def run_main(argv, capsys):
    """(exit status, stdout, stderr) of ``python -m tinyinterp ARGV``."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err):
    """The one line an error prints on stderr (asserting there is one, and no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
