"""Test setup: 4 virtual CPU devices (for sharding tests), fixture paths and the ``slow`` marker.

Tests marked ``@pytest.mark.slow`` (long end-to-end runs) are skipped unless ``--runslow`` is
given or ``RUN_SLOW=1`` is set; the default run keeps one fast path through each feature.
"""

import os

# Must be set before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache per test session: the many small training runs (and
# their subprocesses) compile identical step programs, so later runs skip compilation.
import tempfile  # noqa: E402

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="gancomp_jax_xla_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import sys  # noqa: E402

# PyPI's torchvision (pulled in by the lpips and pytorch-fid reference packages) cannot import beside
# the CPU torch used here ("operator torchvision::nms does not exist"). Hide it before anything
# looks for it, and let transformers record it as absent; tests that need torchvision's few
# constructors install tests/fake_torchvision.py explicitly.
if "torchvision" not in sys.modules:
    sys.modules["torchvision"] = None  # makes `import torchvision` an ImportError, find_spec() None
try:
    import transformers.utils.import_utils  # noqa: E402,F401  (availability flags computed now)
except ImportError:
    pass

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # reference outputs committed with the tests (see its README)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: run with --runslow or RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES}")
    return FIXTURES
