"""Serves the JupyterLab front end built in build/ with Debian's Jupyter Server and jupyterlab_server.

Usage: /usr/bin/python3 server.py --port=N --ServerApp.token=T --ServerApp.root_dir=DIR ...
"""
import os

from jupyterlab_server import LabServerApp

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build")
# What a session writes (user settings, workspaces) goes to a per-server folder, never into build/.
STATE = os.environ.get("STREAMBOOK_LAB_STATE_DIR", os.path.join(BUILD, "state"))


def _jupyter_server_extension_points():
    # Jupyter Server finds the app through its module: this file, run as __main__.
    return [{"module": __name__, "app": StreambookTestLab}]


class StreambookTestLab(LabServerApp):
    name = __name__
    app_name = "JupyterLab (streambook test)"
    extension_url = "/lab"
    default_url = "/lab"
    app_url = "/lab"
    load_other_extensions = False
    static_dir = BUILD
    templates_dir = os.path.join(HERE, "templates")
    schemas_dir = os.path.join(BUILD, "schemas")
    themes_dir = os.path.join(BUILD, "themes")
    app_settings_dir = os.path.join(BUILD, "app_settings")
    user_settings_dir = os.path.join(STATE, "user_settings")
    workspaces_dir = os.path.join(STATE, "workspaces")


if __name__ == "__main__":
    StreambookTestLab.launch_instance()
