import pytest
import torch

# One intra-op thread: the tests run many small tensor operations, which a thread pool only slows down (by up
# to 30x on a loaded 2-core machine), and results do not depend on scheduling. Tests about threads set their own.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
