import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hyperjax.utils import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (deselected by default)")
