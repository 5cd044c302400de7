import pytest

from tests.helpers import cuda_usable


def pytest_collection_modifyitems(config, items):
    if cuda_usable():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and pydeblur's CUDA kernels")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
