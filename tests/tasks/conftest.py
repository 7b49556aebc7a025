import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The machine is shared: one intra-op thread keeps these small models fast and the timings stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
