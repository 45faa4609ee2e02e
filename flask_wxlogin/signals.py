"""Blinker signals, sent with the app as sender.

- ``user_logged_in``: ``user`` (the new :class:`~.user.WxUser`)
- ``user_logged_out``: ``user`` (the session that ended)
- ``user_login_failed``: ``error`` (the :class:`~.errors.WxLoginError`)
"""
from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

user_logged_in = _signals.signal("wxlogin.user-logged-in")
user_logged_out = _signals.signal("wxlogin.user-logged-out")
user_login_failed = _signals.signal("wxlogin.user-login-failed")
