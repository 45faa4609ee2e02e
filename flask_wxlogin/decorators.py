"""``login_required`` and ``current_wx_user``."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, TypeVar, Union, cast, overload

from flask import current_app, g, has_request_context, request
from werkzeug.local import LocalProxy

from . import metrics
from .config import MAIN_PROGRAM
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
        # Each context local resolved once, then used as a plain object: an attribute read or
        # write through a proxy costs several times as much (this runs on every request).
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        environ = request._get_current_object().environ  # type: ignore[attr-defined]
        if environ["REQUEST_METHOD"] == "OPTIONS":
            return app.make_default_options_response()
        try:
            user = app.extensions["wxlogin"].authenticate_environ(app, environ, program)
        except Unauthorized as error:
            metrics.rejected(program or MAIN_PROGRAM, error.error)
            raise
        g._get_current_object()._wxlogin_user = user  # type: ignore[attr-defined]
        if is_async:
            return app.ensure_sync(view)(*args, **kwargs)
        return view(*args, **kwargs)

    return cast(F, decorated)


def _current_user() -> Union[WxUser, AnonymousWxUser]:
    try:
        found = g._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:  # no app context
        return ANONYMOUS
    user = getattr(found, "_wxlogin_user", None)
    if user is not None:
        return user  # type: ignore[no-any-return]
    if not has_request_context():
        return ANONYMOUS
    try:
        user = current_app.extensions["wxlogin"].authenticate()
    except Unauthorized:
        user = ANONYMOUS
    found._wxlogin_user = user
    return user  # type: ignore[no-any-return]


#: The request's user: a :class:`~.user.WxUser` under ``login_required``; in
#: other views the skey is checked on first use, and a request without a valid
#: one sees an :class:`~.user.AnonymousWxUser` (falsy, ``openid`` None); a
#: session store that cannot be reached then answers 503, as under ``login_required``.
current_wx_user: Union[WxUser, AnonymousWxUser] = cast(Any, LocalProxy(_current_user))
