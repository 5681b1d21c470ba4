"""What the deployment must honour: the configuration contract of SPEC §7,
the roles, and the SPEC §8 defaults the default render is checked against."""

import re


CONTRACT_ENV = {
    "PORT", "ADMIN_PORT", "BUFF_SIZE", "SIGTERM_TIMEOUT", "RECONNECT_GRACE",
    "IDLE_TIMEOUT", "MAX_CONNECTIONS", "WORKERS", "POD_NAME", "LOG_LEVEL",
    "LOG_FORMAT", "MEMCACHED_SERVICE", "MEMCACHED_PORT", "KAFKA_BROKERS",
    "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USER",
    "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CA_FILE", "KAFKA_BCAST_TOPIC",
    "KAFKA_LOGGING_TOPIC", "ELASTICSEARCH_ENDPOINT",
    "ELASTICSEARCH_LOGGING_INDEX", "ELASTICSEARCH_USERNAME",
    "ELASTICSEARCH_PASSWORD", "ELASTICSEARCH_CA_FILE",
    "ELASTICSEARCH_INSECURE_SKIP_VERIFY", "IGNORE_MESSAGES_BEFORE",
}
ROLES = {"tcp", "udp", "logger"}
DEFAULT_RECONNECT_GRACE = 5
DEFAULT_SIGTERM_TIMEOUT = 20
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
NAME_IS_LABEL = {"Service", "Namespace"}

# SPEC §8 defaults, checked on the render of the default values.
SPEC_HPA = {
    "minReplicas": 1,
    "maxReplicas": 5,
    "targets": {"tcp": ("playground_tcp_connections", "5000"),
                "udp": ("playground_udp_packets_per_second", "25000")},
    "cpu": 80,
    "memory": 80,
    "behavior": {
        "scaleUp": {"stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]},
        "scaleDown": {"stabilizationWindowSeconds": 45,
                      "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]},
    },
}
SPEC_ENVOY_CB = 50000
