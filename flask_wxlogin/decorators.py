"""``login_required`` and ``current_wx_user``."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, TypeVar, Union, cast, overload

from flask import current_app, g, has_request_context, request
from werkzeug.local import LocalProxy

from .errors import Unauthorized
from .user import ANONYMOUS, AnonymousWxUser, WxUser

F = TypeVar("F", bound=Callable[..., Any])


@overload
def login_required(view: F) -> F: ...
@overload
def login_required(*, program: Optional[str] = None) -> Callable[[F], F]: ...


def login_required(view: Optional[F] = None, *, program: Optional[str] = None) -> Any:
    """Let the view run only for a request with a live session; otherwise 401.

    A missing, malformed, forged, expired or revoked skey answers 401; a session
    store that cannot be reached answers 503, never 401 and never access.
    ``@login_required(program="staff")`` takes only skeys of that mini
    program; bare, only those of the main one (``WXLOGIN_APPID``).

    An OPTIONS request (a CORS preflight, which carries no credentials) gets
    Flask's default OPTIONS answer and never reaches the view, even when the
    route lists OPTIONS itself: the view never runs unauthenticated.
    """
    if view is None:
        return functools.partial(login_required, program=program)

    is_async = inspect.iscoroutinefunction(view)

    @functools.wraps(view)
    def decorated(*args: Any, **kwargs: Any) -> Any:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        environ = request.environ
        if environ["REQUEST_METHOD"] == "OPTIONS":
            return app.make_default_options_response()
        g._wxlogin_user = app.extensions["wxlogin"].authenticate_environ(app, environ, program)
        if is_async:
            return app.ensure_sync(view)(*args, **kwargs)
        return view(*args, **kwargs)

    return cast(F, decorated)


def _current_user() -> Union[WxUser, AnonymousWxUser]:
    try:
        return g._wxlogin_user  # type: ignore[no-any-return]
    except AttributeError:
        pass
    except RuntimeError:  # no app context
        return ANONYMOUS
    if not has_request_context():
        return ANONYMOUS
    try:
        user = current_app.extensions["wxlogin"].authenticate()
    except Unauthorized:
        user = ANONYMOUS
    g._wxlogin_user = user
    return user


#: The request's user: a :class:`~.user.WxUser` under ``login_required``; in
#: other views the skey is checked on first use, and a request without a valid
#: one sees an :class:`~.user.AnonymousWxUser` (falsy, ``openid`` None).
current_wx_user: Union[WxUser, AnonymousWxUser] = cast(Any, LocalProxy(_current_user))
