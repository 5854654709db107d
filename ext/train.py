"""Train with BasicSR's loop and this package's components.

    python ext/train.py -opt options/train_multiaesrgan_x4plus.yml [--auto_resume] [--debug]
        [--launcher pytorch] [--force_yml train:total_iter=1000 ...]

Works from any working directory: experiments go to ``<repository>/experiments/<name>`` (or
``path.experiments_root``), and relative paths in the option file are relative to the repository.
Distributed: ``python -m torch.distributed.run --nproc_per_node=2 ext/train.py -opt X.yml --launcher pytorch``
(gloo on machines without a GPU).
"""
import os.path as osp
import sys

if __name__ == '__main__' and not __package__:
    # Run as a script: import the package from the repository, not ext/'s modules as top-level ones.
    sys.path[0] = osp.dirname(osp.dirname(osp.abspath(__file__)))

import ext  # noqa: E402

ext.activate()  # applies ext.engine.patching, registers every component
import basicsr.train  # noqa: E402
from ext.options import main_guard, parse_options  # noqa: E402
from ext.paths import project_root  # noqa: E402


def main():
    basicsr.train.parse_options = parse_options
    main_guard(lambda: basicsr.train.train_pipeline(project_root()))


if __name__ == '__main__':
    main()
