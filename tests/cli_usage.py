"""Test helper: a command line that must be refused as a user's mistake (sgfast/cli_errors.py):
exit status 2, no traceback, and the error as the last stderr line "sgfast <command>: error: ..."."""
import re

import pytest


def usage_error(capsys, argv, match=None) -> str:
    """Run `sgfast argv` in-process; returns the error line (checked against the regex `match`)."""
    from sgfast.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(map(str, argv)))
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err, err
    line = err.rstrip("\n").splitlines()[-1]
    assert line.startswith(f"sgfast {argv[0]}: error: "), err
    if match is not None:
        assert re.search(match, line), line
    return line
