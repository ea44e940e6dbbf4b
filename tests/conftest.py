import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")


@pytest.fixture(scope="session")
def smoke():
    from scriptlab import data

    return data.load("smoke", seed=0, progress=False)
