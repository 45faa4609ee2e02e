"""Sphinx configuration: English source, zh_CN through gettext (``python docs/build.py``)."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This checkout's package, not whichever one is installed, and our extension.
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

import flask_wxlogin  # noqa: E402

project = "flask-wxlogin"
author = "flask-wxlogin contributors"
copyright = "flask-wxlogin contributors"
release = version = flask_wxlogin.__version__

extensions = ["sphinx.ext.autodoc", "wxlogin_docs"]
exclude_patterns = ["_build", "locales", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["wxlogin.css"]

language = "en"
locale_dirs = ["locales/"]
gettext_compact = False
gettext_location = False
gettext_uuid = False
gettext_last_translator = "flask-wxlogin contributors"

html_theme = "furo"
html_title = f"flask-wxlogin {release}"
html_sidebars = {
    "**": [
        "sidebar/brand.html",
        "sidebar/search.html",
        "sidebar/scroll-start.html",
        "sidebar/navigation.html",
        "sidebar/language.html",
        "sidebar/scroll-end.html",
    ]
}

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
