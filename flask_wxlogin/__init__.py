"""WeChat mini program login for Flask: code2Session, server-side sessions, skeys."""
from .client import Identity
from .decorators import current_wx_user, login_required
from .errors import (
    AccessTokenUnavailable,
    BadLoginRequest,
    CallbackError,
    ConfigurationError,
    DecryptError,
    LoginRateLimited,
    StoreUnavailable,
    Unauthorized,
    WeChatError,
    WxLoginError,
)
from .extension import WxLogin
from .signals import user_logged_in, user_logged_out, user_login_failed
from .user import AnonymousWxUser, SessionInfo, WxUser

__version__ = "0.3.0"

__all__ = [
    "AccessTokenUnavailable",
    "AnonymousWxUser",
    "BadLoginRequest",
    "CallbackError",
    "ConfigurationError",
    "DecryptError",
    "Identity",
    "LoginRateLimited",
    "SessionInfo",
    "StoreUnavailable",
    "Unauthorized",
    "WeChatError",
    "WxLogin",
    "WxLoginError",
    "WxUser",
    "current_wx_user",
    "login_required",
    "user_logged_in",
    "user_logged_out",
    "user_login_failed",
]
