#!/usr/bin/env python3
"""Starts os-ken's AppManager with perf/osken/reactive_app.py (os-ken 4.x ships no
osken-manager). The hub is eventlet unless OSKEN_HUB_TYPE says otherwise.

    perf/.venv/bin/python perf/osken/run_app.py --ofp-listen-host 127.0.0.1 --ofp-tcp-listen-port 16653

Other os-ken options (--verbose, --log-file, ...) pass through. Prints
"osken listening on HOST:PORT" on stdout once the app is instantiated (the listener is
bound right after), and stops on SIGTERM/SIGINT.
"""

import os
import signal
import sys

# Must be set before os_ken.lib.hub is imported: the hub type is read at import time.
os.environ.setdefault("OSKEN_HUB_TYPE", "eventlet")

import warnings  # noqa: E402

warnings.filterwarnings("ignore")  # eventlet's and dnspython's deprecation warnings

from os_ken.lib import hub  # noqa: E402

hub.patch(thread=False)

from os_ken import cfg, log  # noqa: E402

log.early_init_log()

from os_ken.base.app_manager import AppManager  # noqa: E402
from os_ken.controller import controller  # noqa: E402,F401  (registers the ofp-* options)

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "reactive_app.py")


def main():
    cfg.CONF(args=sys.argv[1:], project="os_ken", version="run_app")
    log.init_log()
    if not cfg.CONF.ofp_tcp_listen_port:
        cfg.CONF.set_override("ofp_tcp_listen_port", 6653)

    def stop(signum, frame):
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    mgr = AppManager.get_instance()
    mgr.load_apps([APP])
    contexts = mgr.create_contexts()
    services = mgr.instantiate_apps(**contexts)
    print("osken listening on %s:%d (hub %s)" % (cfg.CONF.ofp_listen_host,
                                                cfg.CONF.ofp_tcp_listen_port,
                                                hub.HUB_TYPE), flush=True)
    try:
        hub.joinall(services)
    finally:
        mgr.close()


if __name__ == "__main__":
    main()
