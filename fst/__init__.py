"""fst: feed-forward style transfer with inter-class and intra-class style losses."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fst")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+src"
