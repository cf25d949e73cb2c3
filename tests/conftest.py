import os

import pytest
import torch

# Tests never write into the user's results/ or cache: each session gets its own folders.
@pytest.fixture(autouse=True, scope="session")
def _isolated_results(tmp_path_factory):
    old = {k: os.environ.get(k) for k in ("FCN_RESULTS",)}
    os.environ["FCN_RESULTS"] = str(tmp_path_factory.mktemp("results"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    """Where the smoke run of the notebooks (tests/test_notebooks.py) writes its executed notebooks,
    summary and report, and where tests/test_browser.py reopens them: a folder of this session, never
    the checkout's results/."""
    return tmp_path_factory.mktemp("smoke")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests' tensors are small: on a 2-core machine one thread runs them 5-10x faster than two."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _keep_threads():
    """A test that starts a run (which sets every core) must not leave the rest of the session on them."""
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    """The browser tests last: they reopen the notebooks that the smoke run (test_notebooks.py) executed."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
