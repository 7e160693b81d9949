"""The import path `fst.module` of earlier releases: the module `fst.training.module` itself."""

import sys

from fst.training import module

sys.modules[__name__] = module
