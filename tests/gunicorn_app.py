"""The test app served by a real gunicorn in ``test_gunicorn_bodies.py`` (``tests.gunicorn_app:app``).

WeChat is the loopback ``FakeWeChat`` whose URL the test passes in ``WXLOGIN_API_BASE``.
"""
import os

from .conftest import make_app

app = make_app(WXLOGIN_API_BASE=os.environ["WXLOGIN_API_BASE"])
