"""Test (evaluate) a trained model with BasicSR's test pipeline and this package's components.

    python ext/test.py -opt options/test_ttsr_cufed5.yml

Results go to ``<repository>/results/<name>`` (or ``path.results_root``).
"""
import os.path as osp
import sys

if __name__ == '__main__' and not __package__:
    sys.path[0] = osp.dirname(osp.dirname(osp.abspath(__file__)))

import ext  # noqa: E402

ext.activate()  # applies ext.engine.patching, registers every component
import basicsr.test  # noqa: E402
from ext.options import main_guard, parse_options  # noqa: E402
from ext.paths import project_root  # noqa: E402


def main():
    basicsr.test.parse_options = parse_options
    main_guard(lambda: basicsr.test.test_pipeline(project_root()))


if __name__ == '__main__':
    main()
