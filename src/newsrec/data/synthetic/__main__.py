"""`python -m newsrec.data.synthetic`: see `newsrec.data.synthetic.cli`."""

import sys

from newsrec.data.synthetic.cli import main

main(sys.argv[1:])
