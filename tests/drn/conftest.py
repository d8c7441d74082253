import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_thread() -> None:
    # tiny networks: intra-op threading only adds contention on small shared machines
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
