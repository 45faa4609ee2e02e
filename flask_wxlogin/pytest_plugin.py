"""The ``wxlogin`` pytest plugin, active wherever flask-wxlogin is installed.

Fixtures (``wx_skey`` and ``wx_client`` use your ``app`` fixture, the
pytest-flask convention; this plugin defines no ``app`` of its own):

- ``fake_wechat``: a started :class:`~flask_wxlogin.testing.FakeWeChat`,
  stopped afterwards; ``fake_wechat.config`` goes into your app's config;
- ``wx_skey``: ``wx_skey(openid="o1", **kwargs) -> skey``, through
  :func:`~flask_wxlogin.testing.issue_skey`;
- ``wx_client``: a :class:`~flask_wxlogin.testing.WxLoginClient` for ``app``,
  logged in as a fresh user (``wx_client.wx_user["openid"]``).

flask_wxlogin is imported inside the fixtures, not when pytest loads the
plugin, so coverage of a test run still sees the package imported.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest


@pytest.fixture
def fake_wechat() -> Iterator[Any]:
    """A started FakeWeChat, stopped after the test."""
    from .testing import FakeWeChat

    with FakeWeChat() as fake:
        yield fake


@pytest.fixture
def wx_skey(app: Any) -> Callable[..., str]:
    """``wx_skey(openid="o1", **kwargs)``: the skey of a new session of ``app`` for that user."""
    from .testing import issue_skey

    def make(openid: str = "o1", **kwargs: Any) -> str:
        return issue_skey(app, openid=openid, **kwargs)

    return make


@pytest.fixture
def wx_client(app: Any) -> Any:
    """A test client of ``app`` logged in as a fresh user."""
    from .fakewechat import new_openid
    from .testing import WxLoginClient

    return WxLoginClient(app, app.response_class, wx_user={"openid": new_openid()})
