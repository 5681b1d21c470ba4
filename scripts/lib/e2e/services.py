"""nginx and prometheus packages, scripts/services, Kafka's topic tool."""

import concurrent.futures
import os

from playlib import CACHE, STATE, Failure, apt_install, run, service
from prom import PROMETHEUS

from .config import KAFKA, NGINX, NGINX_STREAM_MODULE, log, verdict


def ensure_tools():
    missing = [package for package, path in (("nginx", NGINX), ("libnginx-mod-stream", NGINX_STREAM_MODULE),
                                             ("prometheus", PROMETHEUS), ("procps", "/usr/bin/ps"))
               if not os.path.exists(path)]
    if missing:
        log(f"installing {' '.join(missing)}")
        apt_install(missing)
    return missing


STARTED_SERVICES = []  # started by this run, stopped at its end


def ensure_services():
    """Starts memcached, Kafka and OpenSearch (in parallel) unless they already answer."""
    def start(name):
        if service(name, "status", timeout=60)[0] == 0:
            log(f"{name}: already running, left as it is")
            return None
        STARTED_SERVICES.append(name)
        log(f"{name}: starting")
        rc, out = service(name, "start", timeout=600)
        return out[-1500:] if rc else None

    names = ("memcached", "kafka", "opensearch")
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        errors = {name: out for name, out in zip(names, pool.map(start, names), strict=True) if out}
    verdict("services: memcached, Kafka, OpenSearch", "answering",
            "failed: " + ", ".join(errors) if errors else
            "started " + (", ".join(STARTED_SERVICES) or "none") + "; the rest were running",
            not errors)
    if errors:
        raise Failure("\n".join(f"{k}: {v}" for k, v in errors.items()))


def stop_services():
    for name in reversed(STARTED_SERVICES):
        log(f"{name}: stopping (this run started it)")
        try:
            service(name, "stop", timeout=120)
        except Failure as e:
            log(f"{name}: {e}")


def kafka_topic_tool(args, timeout=120):
    """Kafka's TopicCommand, as scripts/services/kafka runs it."""
    lib = os.path.join(CACHE, "kafka", os.environ.get("KAFKA_VERSION", "4.4.0"), "lib", "*")
    props = os.path.join(STATE, "kafka", "client.properties")
    return run(["java", "-cp", lib, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", KAFKA,
                "--command-config", props, *args], timeout=timeout, check=False)
