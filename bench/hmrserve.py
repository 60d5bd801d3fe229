"""The hmr contender's entry file: ``hmr bench/hmrserve.py pkg.wsgi:app PORT``.

hmr (Python 3.12+) runs this file reactively and runs it again, with the
modules it depends on, when one of them changes. The first run starts
waitress (8 threads) in a thread; every run hands it the application just
imported. The server and the current application live in a plain module
that hmr does not track, so they outlive the runs.
"""

import importlib
import sys
import threading
import types

import waitress

statement, port = sys.argv[1], int(sys.argv[2])
module, _, attr = statement.partition(":")
application = getattr(importlib.import_module(module), attr)

holder = sys.modules.get("_bench_hmr_holder")
if holder is None:
    holder = sys.modules["_bench_hmr_holder"] = types.ModuleType("_bench_hmr_holder")
    holder.app = application

    def dispatch(environ, start_response):
        return holder.app(environ, start_response)

    server = waitress.create_server(dispatch, host="127.0.0.1", port=port, threads=8)
    threading.Thread(target=server.run, name="waitress", daemon=True).start()
holder.app = application
print(f"hmr: serving {statement} ({id(application):x})", flush=True)
