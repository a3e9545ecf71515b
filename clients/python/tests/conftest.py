"""The SDK's unit tests: no service, only httpx.MockTransport (see mockapi.py)."""

from __future__ import annotations

import pytest
from mockapi import MockApi


@pytest.fixture
def api() -> MockApi:
    return MockApi()
