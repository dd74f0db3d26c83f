"""`python -m autograder.nbgrader_main ARGS` = `nbgrader ARGS`, four seconds sooner.

jsonschema (imported by nbformat) imports rfc3987_syntax when it is installed,
which builds a parser for IRIs at import time: about four CPU seconds for every
process, for a format nbformat never checks. Blocking that import makes
jsonschema fall back to not validating "iri" strings.
"""

import sys


def block_slow_imports() -> None:
    """Keep nbgrader from importing rfc3987_syntax, a slow import that grading never needs."""
    sys.modules.setdefault("rfc3987_syntax", None)


if __name__ == "__main__":
    block_slow_imports()
    from nbgrader.apps.nbgraderapp import main

    sys.argv[0] = "nbgrader"
    main()
