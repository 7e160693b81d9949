"""The import path `fst.transformer` of earlier releases: the module `fst.models.transformer` itself."""

import sys

from fst.models import transformer

sys.modules[__name__] = transformer
